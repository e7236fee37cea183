"""Hostile and mistaken input (issue 11): every bad input x the commands it reaches.

Each case of the table runs the real console entry point in a child process inside its own
sandbox folder and asserts: the exit status, one clear error line (no 'Traceback'), no hang (a
timeout), a peak memory under 300 MB (the child's own VmHWM), and that no file
in the sandbox other than the case's declared outputs was created, changed, moved or deleted.
Add a row whenever a new bad input is found; the harness does the rest.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures"
MODELS = FIX / "models"
CLIP = FIX / "clip.mp4"
FACE_PNG = FIX / "faces" / "fer32305_happy_320x240.png"
PEAK_MB = 300
TIMEOUT_S = 60


# ---------------------------------------------------------------------------------------------
# inputs: small files that declare huge or wrong things
def png_bytes(w: int, h: int, depth: int = 8, ctype: int = 0) -> bytes:
    """A valid PNG of zeros: a few hundred KB that decodes to w*h*channels*depth/8 bytes."""
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    row = b"\x00" * (1 + w * ch * depth // 8)
    c = zlib.compressobj(9)
    data = b"".join(c.compress(row) for _ in range(h)) + c.flush()

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def jpeg_header_bomb() -> bytes:
    """A JPEG frame header declaring 65000x65000 (no real data: the header alone must refuse it)."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 65000, 65000, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + sof + b"\xff\xd9"


_BOMBS: dict[str, bytes] = {}


def bomb(name: str) -> bytes:
    if name not in _BOMBS:
        _BOMBS[name] = {"rgba16": lambda: png_bytes(12000, 12000, 16, 6),
                        "gray20k": lambda: png_bytes(20000, 20000, 8, 0),
                        "jpeg65k": jpeg_header_bomb,
                        "strip": lambda: png_bytes(1_000_000, 16, 8, 6)}[name]()
    return _BOMBS[name]


def model_with(sandbox: Path, name: str = "m", src: str = "tiny_int8", **changes) -> Path:
    """A copy of a fixture model whose JSON has top-level (or 'input.x') keys replaced."""
    dst = sandbox / f"{name}.tflite"
    shutil.copy(MODELS / f"{src}.tflite", dst)
    meta = json.loads((MODELS / f"{src}.json").read_text())
    for key, value in changes.items():
        if key.startswith("input_"):
            meta["input"][key[len("input_"):]] = value
        else:
            meta[key] = value
    dst.with_suffix(".json").write_text(json.dumps(meta))
    return dst


def sqlite_of_another_program(path: Path) -> None:
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE photos (name TEXT)")
    c.execute("INSERT INTO photos VALUES ('keep me')")
    c.commit()
    c.close()


def our_log_with(**row) -> Callable[[Path], None]:
    """An emotion-edge log (made by EventLog) holding one extra row with the given column values."""
    def _make(s: Path) -> None:
        from edge.config import LogConfig
        from edge.eventlog import EventLog

        EventLog(s / "ours.db", LogConfig()).close()
        vals = {"time": time.time(), "kind": "change", "mood": "happy", "confidence": 0.9, "probs": None,
                "faces": 1.0, **row}
        c = sqlite3.connect(s / "ours.db")
        c.execute(f"INSERT INTO events ({', '.join(vals)}) VALUES ({', '.join('?' * len(vals))})", list(vals.values()))
        c.commit()
        c.close()
    return _make


def meta_value(key: str, value: object) -> Callable[[Path], None]:
    """Another program's value in our log's meta table."""
    def _set(s: Path) -> None:
        c = sqlite3.connect(s / "ours.db")
        c.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
        c.commit()
        c.close()
    return _set


# ---------------------------------------------------------------------------------------------
# the harness
@dataclass
class Case:
    id: str
    argv: list[str]  # {s} is the sandbox folder
    setup: Callable[[Path], None] = lambda s: None
    code: int = 2
    words: str = ""  # must appear in the error line (stderr), or in stdout when stream == "stdout"
    stream: str = "stderr"
    outputs: tuple[str, ...] = ()  # globs (relative to the sandbox) the command may create or change
    err_lines: int = 1  # non-empty stderr lines expected (log warnings before the error count too); USAGE: argparse
    module: str = "edge.cli"
    forbid: tuple[str, ...] = ()  # substrings that must not reach stdout/stderr (raw escapes)


def fifo(name: str) -> Callable[[Path], None]:
    return lambda s: os.mkfifo(s / name)


def write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def _w(s: Path) -> None:
        (s / name).parent.mkdir(parents=True, exist_ok=True)
        (s / name).write_bytes(data.encode() if isinstance(data, str) else data)
    return _w


def steps(*fns: Callable[[Path], None]) -> Callable[[Path], None]:
    def _all(s: Path) -> None:
        for f in fns:
            f(s)
    return _all


def wide_video(name: str, width: int = 9000, height: int = 16) -> Callable[[Path], None]:
    """A real MJPG clip of a few KB whose frames are wider than any camera (the decoder would allocate them)."""
    def _w(s: Path) -> None:
        import cv2
        import numpy as np

        out = cv2.VideoWriter(str(s / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
        for _ in range(3):
            out.write(np.zeros((height, width, 3), np.uint8))
        out.release()
    return _w


def status_json(**fields) -> Callable[[Path], None]:
    # An hour old: `status` exits 3 whether systemd runs here (the unit is not found) or not (the file
    # is stale); with a fresh file and no systemd it would say running, exit 0.
    return write("status.json", json.dumps({"state": "running", "updated": time.time() - 3600, **fields}))


USAGE = -1  # argparse's own refusal: usage lines, then exactly one "error:" line
RUN = ["run", "--source", str(CLIP), "--led", "none", "--db", "{s}/log.db"]
LOG_OUT = ("log.db", "log.db-*", "status.json")

CASES = [
    # 1. model metadata with objects of the wrong type: exit 2 at start, in every command
    *[Case(f"model-{key}-{typ}-{cmd}", [cmd, "--model", "{s}/m.tflite", *extra],
           lambda s, key=key, v=v: model_with(s, **{key: v}), 2, f"'{key}' must be a JSON object",
           outputs=LOG_OUT)
      for key in ("quantization", "metrics", "made_by")
      for typ, v in (("str", "abc"), ("list", [1, 2]))
      for cmd, extra in (("run", ["--source", str(CLIP), "--led", "none", "--db", "{s}/log.db"]),
                         ("photo", [str(FACE_PNG)]))],
    Case("model-labels-escape", [*RUN, "--model", "{s}/m.tflite"],
         lambda s: model_with(s, labels=["angry", "\x1b[31mred", "x\ny", "d", "e", "f", "g"]), 2,
         "printable names", outputs=LOG_OUT, forbid=("\x1b",)),
    Case("model-channels-bool", [*RUN, "--model", "{s}/m.tflite"], lambda s: model_with(s, input_channels=True), 2,
         "grayscale", outputs=LOG_OUT),
    Case("model-dtype-list", [*RUN, "--model", "{s}/m.tflite"], lambda s: model_with(s, input_dtype=["int8"]), 2,
         "dtype", outputs=LOG_OUT),
    Case("model-json-nested", [*RUN, "--model", "{s}/m.tflite"],
         steps(lambda s: model_with(s), write("m.json", "[" * 100_000 + "]" * 100_000)), 2, "unreadable metadata",
         outputs=LOG_OUT),
    Case("model-json-fifo", [*RUN, "--model", "{s}/m.tflite"],
         steps(lambda s: model_with(s), lambda s: (s / "m.json").unlink(), fifo("m.json")), 2,
         "model metadata not found", outputs=LOG_OUT),
    # 13. range that disagrees with the int8 quantization
    Case("model-range-vs-quant", [*RUN, "--model", "{s}/m.tflite"],
         lambda s: model_with(s, input_range=[0, 255]), 2, "input is quantized for 0..1", outputs=LOG_OUT),
    # 7. a model that answers NaN: check fails, photo fails the image
    Case("model-nan-check", ["check", "--model", str(MODELS / "nan_float32.tflite"), "--led", "none"], code=1,
         words="FAIL model", stream="stdout"),
    Case("model-nan-photo", ["photo", "--model", str(MODELS / "nan_float32.tflite"), "--cropped", str(FACE_PNG)],
         code=1, words="not a number"),
    # 2. decompression bombs, refused from the header
    *[Case(f"bomb-{b}-photo", ["photo", "{s}/in/bomb.png", "--annotate", "{s}/ann"],
           lambda s, b=b: write("in/bomb.png", bomb(b))(s), 1, "scale it down first", outputs=("ann",))
      for b in ("rgba16", "gray20k", "jpeg65k")],
    Case("bomb-strip-photo", ["photo", "{s}/in/strip.png"], lambda s: write("in/strip.png", bomb("strip"))(s), 1,
         "px a side"),
    Case("bomb-gray20k-run-dir", ["run", "--source", "{s}/in", "--led", "none", "--db", "{s}/log.db"],
         lambda s: write("in/bomb.png", bomb("gray20k"))(s), 2, "no usable frames", outputs=LOG_OUT, err_lines=2),
    Case("bomb-rgba16-check-dir", ["check", "--source", "{s}/in", "--led", "none"],
         lambda s: write("in/bomb.png", bomb("rgba16"))(s), 1, "FAIL source", stream="stdout", err_lines=1),
    # 3. unbounded reads: devices, FIFOs, folders where a file belongs
    Case("config-dev-zero", ["--config", "/dev/zero", "config", "--print"], words="not a regular file"),
    Case("config-fifo", ["--config", "{s}/c.toml", "config", "--check"], fifo("c.toml"), words="FIFO"),
    Case("config-folder", ["--config", "{s}", "config", "--check"], words="a folder"),
    Case("config-huge", ["--config", "{s}/c.toml", "config", "--check"], write("c.toml", "#" * (2 << 20)),
         words="larger than"),
    Case("config-nested", ["--config", "{s}/c.toml", "config", "--check"],
         write("c.toml", "a = " + "[" * 100_000 + "]" * 100_000), words="not valid TOML"),
    Case("config-not-utf8", ["--config", "{s}/c.toml", "config", "--check"], write("c.toml", b"\xff\xfe[led]"),
         words="cannot read config"),
    Case("photo-fifo", ["photo", "{s}/p.png"], fifo("p.png"), 1, "FIFO"),
    Case("photo-dev-zero", ["photo", "/dev/zero"], code=1, words="not a regular file"),
    Case("status-dev-zero", ["status", "--status-file", "/dev/zero", "--unit", "emotion-edge-hostile-test"],
         code=3, words="error:   cannot read /dev/zero", stream="stdout"),
    Case("status-fifo", ["status", "--status-file", "{s}/st.json", "--unit", "emotion-edge-hostile-test"],
         fifo("st.json"), 3, "FIFO", stream="stdout"),
    # 8. status files that are not what the service writes: one error entry each
    *[Case(f"status-{name}", ["status", "--status-file", "{s}/status.json", "--unit", "emotion-edge-hostile-test"],
           setup, 3, "error:", stream="stdout", forbid=("\x1b",))
      for name, setup in (("not-utf8", write("status.json", b'{"state": "\xff"}')),
                          ("nested", write("status.json", "[" * 100_000 + "]" * 100_000)),
                          ("nested-obj", write("status.json", '{"a":' * 50_000 + "1" + "}" * 50_000)),
                          ("fps-str", status_json(fps="fast")),
                          ("updated-str", status_json(updated="yesterday")),
                          ("updated-nan", write("status.json", '{"state": "running", "updated": NaN}')),
                          ("huge-int", write("status.json", '{"state": "running", "updated": 1' + "0" * 400 + "}")),
                          ("model-list", status_json(model=["x"])),
                          ("error-list", status_json(last_error=[1])),
                          ("error-time-str", status_json(last_error={"message": "m", "time": "t"})),
                          ("confidence-str", status_json(mood="happy", confidence="high")),
                          ("frames-float", status_json(fps=1.0, frames=1.5)),
                          ("escapes", status_json(mood="\x1b[2J\x1b[31mhappy", source="cam\nerror:   none")))],
    # 4. --db naming someone else's file: refused, untouched (the sandbox check proves "untouched")
    Case("db-text-file", [*RUN[:-1], "{s}/notes.txt"], write("notes.txt", "my notes\n" * 50), 2,
         "not an emotion-edge event log", outputs=("status.json",)),
    Case("db-other-sqlite", [*RUN[:-1], "{s}/other.db"], lambda s: sqlite_of_another_program(s / "other.db"), 2,
         "another program", outputs=("status.json",)),
    Case("db-fifo", [*RUN[:-1], "{s}/fifo.db"], fifo("fifo.db"), 2, "not a regular file", outputs=("status.json",)),
    # 5. --annotate into a folder holding a planted symlink: the link's target is never written
    Case("annotate-symlink", ["photo", str(FACE_PNG), "--annotate", "{s}/ann"],
         steps(write("precious.png", b"precious"),
               lambda s: (s / "ann").mkdir(),
               lambda s: (s / "ann" / FACE_PNG.name).symlink_to(s / "precious.png")),
         1, "symbolic link"),
    # 6. check --source X checks X
    Case("check-source-missing", ["check", "--source", "{s}/nothing.mp4", "--led", "none"], code=1,
         words="FAIL source", stream="stdout"),
    # 10. run --source DIR with nothing usable
    Case("run-dir-unusable", ["run", "--source", "{s}/in", "--led", "none", "--db", "{s}/log.db"],
         steps(write("in/a.png", b"not a png"), write("in/b.jpg", b"\xff\xd8\xff\xe0 broken")), 2,
         "no usable frames", outputs=LOG_OUT, err_lines=3),
    # a video file whose frames are larger than any camera: refused at open, before the first decode
    Case("run-video-too-wide", ["run", "--source", "{s}/wide.avi", "--led", "none", "--db", "{s}/log.db"],
         wide_video("wide.avi"), 2, "video frames are 9000x16, at most 8192 px a side", outputs=LOG_OUT),
    Case("check-video-too-wide", ["check", "--source", "{s}/wide.avi", "--led", "none"], wide_video("wide.avi"), 1,
         "FAIL source", stream="stdout"),
    # 11. text reaching the terminal
    Case("photo-name-escapes", ["photo", "{s}/in/x\x1b[31m\nfake.png"], write("in/x\x1b[31m\nfake.png", b"junk"), 1,
         "not an image", forbid=("\x1b", "\nfake")),
    # 9. numbers that make no sense
    Case("log-last-huge", ["log", "--db", "{s}/none.db", "-n", "1" + "0" * 23], words="--last"),
    Case("log-last-float", ["log", "--db", "{s}/none.db", "-n", "1e23"], words="invalid int value", err_lines=USAGE),
    Case("log-since-year-1", ["log", "--db", "{s}/none.db", "--since", "0001-01-01"], words="--since"),
    Case("log-since-inf", ["log", "--db", "{s}/none.db", "--since", "9" * 400 + "w"], words="--since"),
    Case("log-db-text", ["log", "--db", "{s}/notes.txt"], write("notes.txt", "hello\n"), 2, "notes.txt"),
    # rows another writer put into our log (found beyond the list)
    *[Case(f"log-row-{name}", ["log", "--db", "{s}/ours.db", *extra], our_log_with(**row), 2, "did not write",
           outputs=("ours.db-*",))
      for name, row, extra in (("confidence-text", {"confidence": "high"}, []),
                               ("probs-nested", {"probs": "[" * 100_000 + "]" * 100_000}, []),
                               ("time-huge", {"time": 1e300}, []),
                               ("time-huge-summary", {"time": 1e300}, ["--summary"]),
                               ("mood-blob", {"mood": b"\x00\x01"}, ["--summary"]),
                               ("time-text-chart", {"time": "yesterday"}, ["--chart"]),
                               ("time-huge-chart", {"time": 1e300}, ["--chart"]),
                               ("mood-blob-chart", {"mood": b"\x00\x01"}, ["--chart"]))],
    *[Case(f"log-meta-interval-{how}", ["log", "--db", "{s}/ours.db", f"--{how}"],
           steps(our_log_with(), meta_value("summary_interval", "abc")), 2, "did not write", outputs=("ours.db-*",))
      for how in ("chart", "summary")],
    Case("log-row-escapes", ["log", "--db", "{s}/ours.db"], our_log_with(mood="\x1b[2Jhappy\nfake"), 0,
         "\\x1b[2Jhappy", stream="stdout", outputs=("ours.db-*",), forbid=("\x1b", "\nfake")),
]

# Round 2 (issue 29): inputs found since, in the same table.
CASES += [
    # C: an integer too large for a float; one past Python's 4300-digit limit
    Case("config-int-400-digits", ["--config", "{s}/c.toml", "config", "--check"],
         write("c.toml", "[mood]\nhalf_life = 1" + "0" * 400 + "\n"), words="mood.half_life: number too large"),
    Case("config-int-5000-digits", ["--config", "{s}/c.toml", "config", "--check"],
         write("c.toml", "[mood]\nhalf_life = 1" + "0" * 5000 + "\n"), words="number too large"),
    # S: a NUL in a path from the config ("embedded null byte" traceback)
    Case("config-db-nul", ["--config", "{s}/c.toml", "run", "--source", str(CLIP), "--led", "none"],
         write("c.toml", '[log]\ndb = "{s}/a\\u0000b.db"\n'), words="log.db: must not contain a NUL"),
    # minor: one pin on two colours; a UTF-8 BOM from a Windows editor (accepted)
    Case("config-pin-twice", ["--config", "{s}/c.toml", "config", "--check"],
         write("c.toml", "[led]\nred_pin = 17\ngreen_pin = 17\n"), words="both are BCM pin 17"),
    Case("config-bom", ["--config", "{s}/c.toml", "config", "--check"],
         write("c.toml", "\ufeff[mood]\nhalf_life = 1.5\n".encode()), code=0, words="config OK", stream="stdout"),
    # S: a camera index OpenCV cannot take (cv2.error traceback)
    *[Case(f"run-source-index-{n}", ["run", "--source", n, "--led", "none", "--db", "{s}/log.db"], code=2,
           words="is out of range", outputs=LOG_OUT) for n in ("4294967296", "9" * 5000)],
    # minor: a folder of many empty files: five lines and a count, not a line each
    Case("run-dir-many-empty", ["run", "--source", "{s}/in", "--led", "none", "--db", "{s}/log.db"],
         steps(*[write(f"in/{i:04d}.png", b"") for i in range(400)]), 2, "no usable frames", outputs=LOG_OUT,
         err_lines=7),
    # minor: --since "" was silently "everything"
    Case("log-since-empty", ["log", "--db", "{s}/none.db", "--since", ""], words="--since ''"),
    # H: moods from the database in the chart and the summary CSV
    *[Case(f"log-row-escapes-{name}", ["log", "--db", "{s}/ours.db", *extra], our_log_with(mood="\x1b[2Jhappy\nfake"),
           0, "\\x1b[2Jhappy", stream="stdout", outputs=("ours.db-*",), forbid=("\x1b", "\nfake"))
      for name, extra in (("chart", ["--chart"]), ("summary-csv", ["--summary", "--csv"]), ("csv", ["--csv"]))],
]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root: type, size, mtime and content hash (FIFOs and links by kind/target)."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                out[rel] = (stat.S_IFMT(st.st_mode),)
    return out


@dataclass
class Result:
    code: int
    out: str
    err: str
    peak_mb: float
    changed: list[str] = field(default_factory=list)


# `python -m module args`, writing its own peak RSS (VmHWM) at exit: the child's ru_maxrss from wait4
# would include the pytest process it was forked from (Linux keeps the pre-exec high-water mark).
LAUNCHER = """
import atexit, os, runpy, sys
def _hwm():
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(os.environ["HOSTILE_HWM_FILE"], "w") as f:
        f.write(str(kb))
atexit.register(_hwm)
mod = sys.argv.pop(1)
runpy.run_module(mod, run_name="__main__", alter_sys=True)
"""


def run_child(argv: list[str], cwd: Path, env: dict[str, str], module: str = "edge.cli",
              timeout: float = TIMEOUT_S) -> Result:
    """Run `python -m module argv` with a timeout; exit status from wait4, peak RSS from the child itself."""
    hwm = cwd.parent / f"{cwd.name}.hwm"
    env = {**env, "HOSTILE_HWM_FILE": str(hwm)}
    with open(cwd.parent / f"{cwd.name}.out", "w+b") as fo, open(cwd.parent / f"{cwd.name}.err", "w+b") as fe:
        p = subprocess.Popen([sys.executable, "-c", LAUNCHER, module, *argv], cwd=cwd, env=env, stdout=fo, stderr=fe,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > end:
                os.killpg(p.pid, signal.SIGKILL)
                os.wait4(p.pid, 0)
                p.returncode = -9
                fe.seek(0)
                raise AssertionError(f"hung: no exit within {timeout} s: {argv}\n{fe.read().decode(errors='replace')}")
            time.sleep(0.02)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        peak_kb = int(hwm.read_text()) if hwm.exists() else usage.ru_maxrss  # no file: killed, count the worst
        return Result(p.returncode, fo.read().decode(errors="replace"), fe.read().decode(errors="replace"),
                      peak_kb / 1024)


def child_env(sandbox: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(sandbox / "home"), "XDG_STATE_HOME": str(sandbox / "state"),
           "GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    for k in ("STATE_DIRECTORY", "NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC"):
        env.pop(k, None)
    return env


def run_case(case: Case, tmp_path: Path) -> Result:
    sandbox = tmp_path / "sb"
    sandbox.mkdir()
    case.setup(sandbox)
    before = snapshot(sandbox)
    argv = [a.replace("{s}", str(sandbox)) for a in case.argv]
    r = run_child(argv, sandbox, child_env(sandbox), case.module)
    after = snapshot(sandbox)
    allowed = lambda rel: any(fnmatch(rel, g) or fnmatch(rel, g + "/*") for g in case.outputs)  # noqa: E731
    r.changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k) and not allowed(k))
    return r


def check(case: Case, r: Result) -> None:
    both = r.out + r.err
    assert "Traceback" not in both, both
    assert r.code == case.code, (r.code, both)
    lines = [ln for ln in r.err.splitlines() if ln.strip() and "XNNPACK" not in ln]
    if case.err_lines == USAGE:
        assert len([ln for ln in lines if "error:" in ln]) == 1 and "error:" in lines[-1], r.err
    elif case.stream == "stderr":
        assert len(lines) == case.err_lines, r.err
    if case.stream == "stderr":
        assert case.words in lines[-1], r.err
    else:
        assert case.words in r.out, r.out
        assert not [ln for ln in lines if "error" in ln.lower()], r.err
    for bad in case.forbid:
        assert bad not in both, both
    assert r.peak_mb < PEAK_MB, f"peak memory {r.peak_mb:.0f} MB"
    assert not r.changed, f"files outside the run's outputs changed: {r.changed}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input(case: Case, tmp_path: Path) -> None:
    r = run_case(case, tmp_path)
    check(case, r)


# ---------------------------------------------------------------------------------------------
# rows that need more than one command line
def _reload_error(p: subprocess.Popen, notify, tmp_path: Path) -> str:
    """SIGHUP the service, wait until it is ready again and has pinged the watchdog twice, and return
    status.json's last error message."""
    t = time.monotonic()
    p.send_signal(signal.SIGHUP)
    notify.wait_for("READY=1", after=t)
    notify.wait_for("WATCHDOG=1", count=2, after=t)
    return json.loads((tmp_path / "status.json").read_text())["last_error"]["message"]


def test_sighup_with_a_mistyped_model_json_keeps_the_old_model(tmp_path):
    """Row 1: on reload a .json whose 'quantization' is a string is refused; the service lives on."""
    from .notify_socket import Collector
    from .test_service import LONG_CLIP, finish, start

    model = model_with(tmp_path)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[classify]\nmodel = "{model}"\n[led]\nbackend = "none"\n')
    notify = Collector(tmp_path / "notify.sock")
    p = start(["--config", str(cfg), "--source", str(LONG_CLIP), "--realtime", "--db", str(tmp_path / "log.db")],
              notify, tmp_path)
    try:
        notify.wait_for("READY=1")
        for key, value in (("quantization", "abc"), ("metrics", [1]), ("made_by", "me")):
            model_with(tmp_path, **{key: value})
            msg = _reload_error(p, notify, tmp_path)
            assert "reload failed" in msg and repr(key) in msg
            assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        rc, err = finish(p, timeout=10)
    finally:
        p.kill()
        notify.close()
    assert rc == 0 and "Traceback" not in err, err


def test_a_nan_model_never_drives_the_led(tmp_path):
    """Row 7: every face frame is a bad frame; the mock pins never leave the idle (off) state."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    from edge.config import load_config
    from edge.loop import Control, Stats, run_loop
    from edge.pipeline import Pipeline

    cfg = load_config(None, {"source": {"source": str(CLIP)}, "led": {"backend": "gpio", "fade": 0.0},
                             "classify": {"model": str(MODELS / "nan_float32.tflite")},
                             "log": {"db": str(tmp_path / "log.db")}})
    factory = MockFactory(pin_class=MockPWMPin)
    parts = Pipeline.build(cfg, pin_factory=factory)
    stats = Stats()
    try:
        assert run_loop(parts, cfg, Control(), stats=stats) == "end"
        pins = [factory.pin(n) for n in (cfg.led.red_pin, cfg.led.green_pin, cfg.led.blue_pin)]
        assert stats.faces_seen > 0 and stats.bad_frames > 0
        assert parts.smoother.mood.label == "none"
        assert all(max([s for _, s in pin.states] or [0.0]) == 0.0 for pin in pins), [pin.states for pin in pins]
    finally:
        parts.close()


def test_check_source_checks_the_source_it_is_given(tmp_path):
    """Row 6: a folder of junk fails `check --source`; a real clip passes with its frame size."""
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"junk")
    env = child_env(tmp_path)
    bad = run_child(["check", "--source", str(tmp_path / "junk"), "--led", "none", "--json"], tmp_path, env)
    good = run_child(["check", "--source", str(CLIP), "--led", "none", "--json"], tmp_path, env)
    assert bad.code == 1 and json.loads(bad.out)["source"]["ok"] is False, bad.out
    assert good.code == 0 and "320x240" in json.loads(good.out)["source"]["detail"], good.out + good.err


def test_annotate_replaces_its_own_output_and_keeps_the_umask(tmp_path):
    """Row 5, the allowed side: a rerun replaces the regular file it wrote before (temp + rename)."""
    env = child_env(tmp_path)
    out = tmp_path / "ann"
    for _ in range(2):
        r = run_child(["photo", str(FACE_PNG), "--annotate", str(out)], tmp_path, env)
        assert r.code == 0, r.err
    assert [p.name for p in out.iterdir()] == [FACE_PNG.name]
    assert stat.S_IMODE((out / FACE_PNG.name).stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def test_status_unit_is_never_an_option(monkeypatch):
    """Row 12: `status --unit -Hhost` must reach systemctl as a unit name, after `--`."""
    from edge.commands import status

    seen = []

    def fake_run(cmd, **kw):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "LoadState=not-found\n", "")

    monkeypatch.setattr(status.shutil, "which", lambda name: "/usr/bin/" + name)  # a host without systemd too
    status.service_state("-Hevil", run=fake_run)
    cmd = seen[0]
    assert cmd[-2:] == ["--", "-Hevil"] and all(not a.startswith("-H") for a in cmd[:-1])


@pytest.mark.parametrize("value", ["a\x07b", "line\nbreak", "tab\there", "del\x7f", 'quote"\\back', "esc\x1b[31m"])
def test_config_print_is_valid_toml_for_any_string(tmp_path, value):
    """Row 11: `config --print` output parses back to the same value (control characters escaped)."""
    import tomllib

    from edge.config import dump_config, load_config

    cfg = load_config(None, {"source": {"source": value}, "led": {"colors": {value: "#123456"}}})
    back = tomllib.loads(dump_config(cfg))
    assert back["source"]["source"] == value and back["led"]["colors"][value] == "#123456"


@pytest.mark.parametrize("ext,shape", [(".png", (30, 40)), (".png", (30, 40, 4)), (".jpg", (30, 40, 3)),
                                       (".bmp", (30, 40, 3)), (".webp", (30, 40, 3)), (".tiff", (30, 40)),
                                       (".pgm", (30, 40)), (".ppm", (30, 40, 3))])
def test_image_header_gives_the_size_opencv_decodes(ext, shape):
    """Row 2: the header reader agrees with OpenCV on every format the folder source accepts."""
    import cv2
    import numpy as np

    from edge.imagecheck import check_image

    ok, buf = cv2.imencode(ext, np.full(shape, 90, np.uint8))
    assert ok
    h = check_image(buf.tobytes())
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    assert (h.height, h.width) == img.shape[:2]
    assert h.channels >= (img.shape[2] if img.ndim == 3 else 1)


def test_image_limits_refuse_before_decoding():
    from edge.imagecheck import MAX_IMAGE_PIXELS, ImageRefused, check_image

    with pytest.raises(ImageRefused, match="8192 px a side"):
        check_image(bomb("rgba16"))
    with pytest.raises(ImageRefused, match="8192 px a side"):
        check_image(bomb("jpeg65k"))
    with pytest.raises(ImageRefused, match="16 megapixel"):
        check_image(png_bytes(8000, 8000))  # 64 MP of gray: too many pixels
    with pytest.raises(ImageRefused, match="64 MB limit"):
        check_image(png_bytes(4000, 3000, 16, 6))  # 12 MP, but 96 MB as 16-bit RGBA
    with pytest.raises(ImageRefused, match="not an image"):
        check_image(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 60000 +X 60000\n")
    assert check_image(png_bytes(4000, 4000)).pixels <= MAX_IMAGE_PIXELS


# ---------------------------------------------------------------------------------------------
# row 15: install.sh
def _staged_root(tmp_path: Path, os_release: str) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text(os_release)
    return root


def test_install_parses_os_release_never_runs_it(tmp_path):
    pwned = tmp_path / "pwned"
    root = _staged_root(tmp_path, f'PRETTY_NAME="Raspbian $(touch {pwned})"\nID=raspbian\n'
                                  f"VERSION_CODENAME=bookworm\n`touch {pwned}`\n")
    p = subprocess.run(["bash", str(REPO / "install.sh"), "--root", str(root), "--no-venv", "--dry-run"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert not pwned.exists(), "install.sh executed a line of DIR/etc/os-release"


def test_install_ignores_the_callers_umask(tmp_path):
    root = _staged_root(tmp_path, 'PRETTY_NAME="Raspbian GNU/Linux 12 (bookworm)"\nID=raspbian\nVERSION_CODENAME=bookworm\n')
    p = subprocess.run(["bash", "-c", 'umask 000 && exec bash "$0" --root "$1" --no-venv', str(REPO / "install.sh"),
                        str(root)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    writable = [str(x.relative_to(root)) for x in root.rglob("*")
                if not x.is_symlink() and x.stat().st_mode & stat.S_IWOTH and x.name != "os-release" and x != root / "etc"]
    assert not writable and (root / "etc/emotion-edge/config.toml.default").is_file(), writable


# ---------------------------------------------------------------------------------------------
# rows 9, 12, 14: the model tool and bench; numbers that make no sense, unsafe names
def _export_cases() -> list[Case]:
    ev = ["evaluate", "--model", str(MODELS / "tiny_int8.tflite"), "--data", "{s}/none.npz"]
    ex = ["export", "{s}/m.keras", "--calibration-data", "{s}/none.npz", "--out", "{s}/o.tflite"]
    tr = ["train", "--data", "{s}/none.npz", "--out", "{s}/run"]
    bench = ["bench", "--source", str(CLIP), "--led", "none"]
    argparse_refusals = [
        ("evaluate-limit-neg", ev + ["--limit", "-5"], "--limit"),
        ("evaluate-latency-n-neg", ev + ["--latency-n", "-3"], "--latency-n"),
        ("evaluate-latency-n-zero", ev + ["--latency-n", "0"], "--latency-n"),
        ("evaluate-labels-dup", ev + ["--labels", "a,b,a"], "appears more than once"),
        ("export-eval-limit-neg", ex + ["--eval-limit", "-3000"], "--eval-limit"),
        ("export-labels-dup", ex + ["--labels", "happy,happy"], "appears more than once"),
        ("export-crop-margin-nan", ex + ["--crop-margin", "nan"], "--crop-margin"),
        *[(f"train-{flag[2:]}-{v}", tr + [flag, v], flag) for flag, v in
          (("--epochs", "0"), ("--epochs", "-2"), ("--width", "0"), ("--lr", "nan"), ("--lr", "inf"),
           ("--input-size", "4"), ("--batch-size", "0"), ("--limit", "-1"))],
    ]
    cases = [Case(f"export-{name}", argv, words=words, err_lines=USAGE, module="model_export.cli")
             for name, argv, words in argparse_refusals]
    cases += [Case(f"bench-{name}", bench + flag, words=words, err_lines=USAGE) for name, flag, words in (
        ("sweep-abc", ["--sweep", "1,abc"], "not a whole number"), ("sweep-zero", ["--sweep", "0,2"], "between 1"),
        ("sweep-comma", ["--sweep", ","], "comma list"), ("cores-neg", ["--cores", "-1"], "--cores"),
        ("cores-99", ["--cores", "99999"], "--cores"))]
    cases += [
        Case("export-train-out-file", tr[:-1] + ["{s}/file"], write("file", "x"), 2, "not a folder",
             module="model_export.cli"),
        Case("export-train-init-missing", tr + ["--init-from", "{s}/nope.keras"], code=2, words="no such file",
             module="model_export.cli"),
        Case("export-evaluate-report-dir-file", ev + ["--report-dir", "{s}/file"], write("file", "x"), 2,
             "not a folder", module="model_export.cli"),
        Case("export-deploy-host-newline", ["deploy", str(MODELS / "tiny_int8.tflite"), "pi@host\n", "--dry-run"],
             code=2, words="expected user@host", module="model_export.cli"),
        Case("export-deploy-name-newline", ["deploy", str(MODELS / "tiny_int8.tflite"), "pi@host", "--name",
                                            "emotion\n", "--dry-run"], code=2, words="--name",
             module="model_export.cli"),
        Case("export-deploy-service-newline", ["deploy", str(MODELS / "tiny_int8.tflite"), "pi@host", "--service",
                                               "emotion-edge\n", "--dry-run"], code=2, words="--service",
             module="model_export.cli"),
    ]
    return cases


EXPORT_CASES = _export_cases()


@pytest.mark.parametrize("case", EXPORT_CASES, ids=[c.id for c in EXPORT_CASES])
def test_hostile_tool_input(case: Case, tmp_path: Path) -> None:
    check(case, run_case(case, tmp_path))


def test_deploy_passes_scp_a_path_it_cannot_take_for_a_host(tmp_path):
    """Row 12: a model named `evil:x.tflite` goes to scp as ./evil:x.tflite."""
    model = model_with(tmp_path, name="evil:x")
    r = run_child(["deploy", model.name, "pi@host", "--dry-run"], tmp_path, child_env(tmp_path), "model_export.cli")
    assert r.code == 0, r.err
    scp = [ln for ln in r.out.splitlines() if ln.startswith("scp")]
    assert len(scp) == 2 and all(" ./evil:x." in ln for ln in scp), r.out


def test_train_init_from_another_architecture_is_refused(tmp_path):
    """Row 9: --init-from a model of another input size or class count: one line, before training."""
    pytest.importorskip("keras")
    import keras
    import numpy as np

    from edge.errors import ModelError
    from model_export.train import _init_model

    inp = keras.Input((32, 32, 1))
    other = keras.Model(inp, keras.layers.Dense(7)(keras.layers.Flatten()(inp)))
    other.save(tmp_path / "other.keras")
    with pytest.raises(ModelError, match="do not match this run"):
        _init_model(tmp_path / "other.keras", 48, 7)
    (tmp_path / "junk.keras").write_bytes(np.zeros(100, np.uint8).tobytes())
    with pytest.raises(ModelError, match="not a readable Keras model"):
        _init_model(tmp_path / "junk.keras", 48, 7)


# ---------------------------------------------------------------------------------------------
# round 2 (issue 29): the running service
def _service(args: list[str], tmp_path: Path, notify, **env: str) -> subprocess.Popen:
    """The service as systemd starts it: its own state folder (STATE_DIRECTORY), no --db."""
    e = {**child_env(tmp_path), "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000", **env}
    return subprocess.Popen([sys.executable, "-m", "edge.service", *args], env=e, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sighup_with_an_integer_too_large_for_a_float_keeps_the_old_config(tmp_path):
    """C: `half_life = 1` and 400 zeros killed the service on SIGHUP (OverflowError); README promises the old config kept."""
    from .notify_socket import Collector
    from .test_service import LONG_CLIP, finish

    cfg = tmp_path / "config.toml"
    good = f'[classify]\nmodel = "{MODELS / "tiny_int8.tflite"}"\n[led]\nbackend = "none"\n'
    cfg.write_text(good)
    notify = Collector(tmp_path / "notify.sock")
    p = _service(["--config", str(cfg), "--source", str(LONG_CLIP), "--realtime", "--db", str(tmp_path / "log.db")],
                 tmp_path, notify)
    try:
        notify.wait_for("READY=1")
        cfg.write_text(good + "[mood]\nhalf_life = 1" + "0" * 400 + "\n")
        msg = _reload_error(p, notify, tmp_path)
        assert "reload failed" in msg and "mood.half_life: number too large" in msg and "\n" not in msg
        assert p.poll() is None
        p.send_signal(signal.SIGTERM)
        rc, err = finish(p, timeout=10)
    finally:
        p.kill()
        notify.close()
    assert rc == 0 and "Traceback" not in err, err


def test_the_service_moves_its_own_damaged_log_aside_and_status_says_so(tmp_path):
    """A: a zeroed first page of the service's own log was exit 2 for ever (RestartPreventExitStatus=2)."""
    from edge.config import LogConfig
    from edge.eventlog import EventLog

    from .notify_socket import Collector
    from .test_service import finish

    state = tmp_path / "state-dir"
    state.mkdir()
    db = state / "emotion-edge.db"
    EventLog(db, LogConfig()).close()
    with open(db, "r+b") as f:
        f.write(b"\0" * 100)
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[classify]\nmodel = "{MODELS / "tiny_int8.tflite"}"\n[led]\nbackend = "none"\n')
    notify = Collector(tmp_path / "notify.sock")
    p = _service(["--config", str(cfg), "--source", str(CLIP), "--max-frames", "20"], tmp_path, notify,
                 STATE_DIRECTORY=str(state))
    try:
        rc, err = finish(p, timeout=60)
    finally:
        p.kill()
        notify.close()
    assert rc == 0 and "Traceback" not in err, err
    moved = [ln for ln in err.splitlines() if "moved it aside" in ln]
    assert len(moved) == 1 and "header is damaged" in moved[0]
    assert len(list(state.glob("emotion-edge.db.corrupt-*"))) == 1
    r = run_child(["status", "--status-file", str(state / "status.json"), "--unit", "emotion-edge-hostile-test"],
                  tmp_path, child_env(tmp_path))
    notes = [ln for ln in r.out.splitlines() if ln.startswith("notice:")]
    assert len(notes) == 1 and "moved aside to emotion-edge.db.corrupt-" in notes[0], r.out
