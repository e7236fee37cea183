"""How much of the time a talking face reads as a negative mood, uncalibrated and calibrated (issue 33).

For each face at rest, a made talking clip (model_export/make_talking.py: the mouth opening at speech
rates, brows lifting on stress, the head drifting; 60 s at 30 fps), then:
- uncalibrated: the loop as `run` plays it (the learned resting face on, as by default);
- calibrated: `calibrate --photos` on every 15th frame of its first 10 s, then the loop with it.
It prints the share of frames whose logged mood is angry, disgust, fear or sad, per face and on
average. Faces: FER2013 PublicTest neutral faces Haar finds when upscaled into a 320x240 frame
(`--fer N`), and with `--jaffe DIR` each jaffe-tune person's first neutral photo, smiling a quarter of
the time (cross-faded from their first happy photo). Clips are made in a temporary folder and deleted.
Real clips of people talking (`--clips`, one face each) are played forth and back to `--seconds`, as
the issue's clip was; where to get some: docs/CALIBRATION.md ("Talking with no calibration").
Usage: python tests/benchmarks/talking.py [--fer 10] [--jaffe ../shared/data/jaffe-tune] [--clips A.mp4 ...] [--seconds 60]
"""
from __future__ import annotations

import argparse
import collections
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edge.config import load_config  # noqa: E402
from edge.loop import Control, run_loop  # noqa: E402
from edge.pipeline import Pipeline  # noqa: E402
from model_export.make_talking import render  # noqa: E402

NEGATIVE = ("angry", "disgust", "fear", "sad")
FER = REPO.parent / "shared" / "data" / "fer2013" / "fer2013.npz"


def fer_faces(n: int) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """PublicTest neutral faces, upscaled to 160 px in a plain 320x240 frame, that Haar finds."""
    z = np.load(FER)
    cc = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    out = []
    for i in np.flatnonzero((z["usage"] == 1) & (z["labels"] == 6)):
        frame = np.full((240, 320), 128, np.uint8)
        frame[40:200, 80:240] = cv2.resize(z["images"][i], (160, 160), interpolation=cv2.INTER_CUBIC)
        if len(cc.detectMultiScale(frame, 1.1, 5, minSize=(40, 40))) == 1:
            out.append((f"fer{i}", frame, None))
        if len(out) == n:
            return out
    return out


def jaffe_faces(root: Path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """Each person's first neutral photo, with their first happy photo to smile with."""
    rows = sorted(csv.DictReader(open(root / "labels.csv")), key=lambda r: r["file"])
    out = []
    for subject in sorted({r["subject"] for r in rows}):
        first = {lab: next(r["file"] for r in rows if r["subject"] == subject and r["label"] == lab) for lab in ("neutral", "happy")}
        out.append((subject, cv2.imread(str(root / first["neutral"]), 0), cv2.imread(str(root / first["happy"]), 0)))
    return out


def forth_and_back(src: Path, out: Path, seconds: float) -> None:
    """`src` played forwards, backwards, forwards ... until `seconds` (the clip's own frame rate and size)."""
    cap = cv2.VideoCapture(str(src))
    fps, frames = cap.get(cv2.CAP_PROP_FPS) or 25.0, []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"{src}: no frames OpenCV can read")
    cycle = frames + frames[-2:0:-1]
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for k in range(int(seconds * fps)):
        writer.write(cycle[k % len(cycle)])
    writer.release()


def negative_share(clip: Path, calibration: Path | None, work: Path, config: Path | None = None) -> float:
    """Share of frames whose mood (as logged) is negative, the loop playing the clip as `run` does."""
    cfg = load_config(config)
    cfg.source.source, cfg.led.backend = str(clip), "none"
    cfg.log.db = str(work / "log.db")
    cfg.calibrate.file = str(calibration) if calibration else str(work / "none.json")
    pipe = Pipeline.build(cfg, with_log=True, calibration_required=calibration is not None)
    moods: collections.Counter[str] = collections.Counter()
    run_loop(pipe, cfg, Control(), on_frame=lambda stats, mood: moods.update((mood.label,)))
    pipe.close()
    (work / "log.db").unlink()
    seen = sum(v for k, v in moods.items() if k != "none")
    return sum(moods[k] for k in NEGATIVE) / max(seen, 1)


def calibrate_from_first_10s(clip: Path, work: Path, extra: tuple[str, ...] = ()) -> Path | None:
    frames = work / "frames"
    frames.mkdir()
    cap = cv2.VideoCapture(str(clip))
    names = []
    for i in range(int(10 * cap.get(cv2.CAP_PROP_FPS))):
        ok, frame = cap.read()
        if ok and i % 15 == 0:
            names.append(str(frames / f"f{i:04d}.png"))
            cv2.imwrite(names[-1], frame)
    cap.release()
    out = work / "me.json"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "calibrate", *extra, "--photos", *names, "--out", str(out)],
                       capture_output=True, text=True, cwd=REPO)
    return out if r.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fer", type=int, default=10, help="this many FER2013 faces (0: none)")
    p.add_argument("--jaffe", type=Path, help="jaffe-tune folder: its five people too")
    p.add_argument("--clips", nargs="+", type=Path, default=[], help="real clips of one person talking")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--config", type=Path, help="a config.toml for the loop (default: the defaults)")
    p.add_argument("--uncalibrated-only", action="store_true", help="skip the calibrated run")
    p.add_argument("--calibrate-args", default="", help="more arguments for `calibrate --photos`, e.g. '--single-crop'")
    a = p.parse_args(argv)
    faces = (fer_faces(a.fer) if a.fer and FER.exists() else []) + (jaffe_faces(a.jaffe) if a.jaffe else [])
    makers = [(name, lambda out, still=still, smile=smile: render(still, out, a.seconds, seed=1, smile=smile))
              for name, still, smile in faces]
    makers += [(c.stem[:10], lambda out, c=c: forth_and_back(c, out, a.seconds)) for c in a.clips]
    if not makers:
        print("no faces: FER2013 is not at ../shared and no --jaffe or --clips given")
        return 1
    rows = []
    print(f"{'face':10s} {'uncalibrated':>12s} {'calibrated':>10s}   (share of frames with a negative mood; {a.seconds:g} s each)")
    for name, make in makers:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            clip = work / "talk.mp4"
            make(clip)
            uncal = negative_share(clip, None, work, a.config)
            cal_file = None if a.uncalibrated_only else calibrate_from_first_10s(clip, work, tuple(a.calibrate_args.split()))
            cal = negative_share(clip, cal_file, work, a.config) if cal_file else float("nan")
        rows.append((uncal, cal))
        print(f"{name:10s} {uncal:12.1%} {cal:10.1%}", flush=True)
    u, c = np.nanmean(np.array(rows), axis=0)
    print(f"{'mean':10s} {u:12.1%} {c:10.1%}   over {len(rows)} faces")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
