"""Make the moving-face test clip: FER2013 faces drifting over the sample's background, a second one coming and going.

Made the way `make_sample.py` makes the bundled demo (PrivateTest faces, upscaled, on the same
synthetic 'room'), but short and busy, to check the tracking detector against full-frame scans:
face A drifts across the frame the whole time, growing and shrinking; face B slides in from the
right at `B_IN` s, moves about, and slides out again at `B_OUT` s. The JSON beside the clip has
each face's pasted box per frame. Small (8 s at 15 fps, 0.13 MB) and committed as a fixture.
Usage: python -m model_export.make_moving --data ../shared/data/fer2013/fer2013.npz [--out tests/fixtures/moving.mp4] [--fps 15]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from edge.argtypes import float_in, random_seed
from model_export.data import FER_LABELS, load_dataset
from model_export.make_sample import SIZE, _background, _detected, _haar

SECONDS = 8.0
B_IN, B_OUT = 2.5, 6.0      # face B enters (starts sliding in) and leaves (starts sliding out)
SLIDE = 0.5                 # seconds to slide in or out


def pick(images: np.ndarray, labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """Two PrivateTest faces (happy, surprise) that Haar finds when upscaled."""
    cc, rng, out = _haar(), np.random.default_rng(seed), []
    for name in ("happy", "surprise"):
        idx = np.flatnonzero(labels == FER_LABELS.index(name))
        rng.shuffle(idx)
        out.append(next(images[i] for i in idx if _detected(cc, images[i], 160)))
    return out


def _a_box(t: float) -> tuple[int, int, int]:
    """Face A: drifts left to right and back, bobs, and breathes in size (x, y, side)."""
    side = int(150 + 25 * np.sin(t * 1.3))
    x = int(60 + 300 * (0.5 - 0.5 * np.cos(t * np.pi / SECONDS * 2)))   # 60 -> 360 -> 60 over the clip
    y = int(150 + 40 * np.sin(t * 2.1))
    return x, y, side


def _b_box(t: float) -> tuple[int, int, int] | None:
    """Face B: slides in from the right edge, drifts up and down, slides out; None when out of frame."""
    if t < B_IN or t >= B_OUT + SLIDE:
        return None
    side, w = 110, SIZE[0]
    home = w - side - 40
    if t < B_IN + SLIDE:
        x = int(w + (home - w) * (t - B_IN) / SLIDE)
    elif t >= B_OUT:
        x = int(home + (w - home) * (t - B_OUT) / SLIDE)
    else:
        x = home - int(30 * np.sin((t - B_IN - SLIDE) * 1.7))
    y = int(60 + 30 * np.sin(t * 1.1))
    return x, y, side


def render(faces: list[np.ndarray], out: Path, fps: float, seed: int) -> list[dict]:
    """Write the clip; returns per frame the pasted (x, y, w, h) of each face fully or partly in view."""
    bg = _background(np.random.default_rng(seed))
    W, H = SIZE
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, SIZE, isColor=False)
    if not writer.isOpened():
        raise SystemExit(f"cannot write {out}")
    truth = []
    for k in range(int(round(SECONDS * fps))):
        t = k / fps
        frame = bg.copy()
        boxes = {}
        for name, face, box in (("a", faces[0], _a_box(t)), ("b", faces[1], _b_box(t))):
            if box is None:
                continue
            x, y, s = box
            big = cv2.resize(face, (s, s), interpolation=cv2.INTER_CUBIC)
            x1 = min(W, x + s)
            if x1 <= x:
                continue
            frame[y:y + s, x:x1] = big[:, :x1 - x]
            boxes[name] = [x, y, x1 - x, s]
        writer.write(frame)
        truth.append({"t": round(t, 4), **boxes})
    writer.release()
    return truth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "moving.mp4")
    p.add_argument("--fps", type=float_in(1.0, 120.0), default=15.0)
    p.add_argument("--seed", type=random_seed, default=11)
    a = p.parse_args(argv)
    images, labels = load_dataset(a.data).split("PrivateTest")
    truth = render(pick(images, labels, a.seed), a.out, a.fps, a.seed)
    a.out.with_suffix(".json").write_text(json.dumps(
        {"source": "FER2013 PrivateTest faces on a synthetic background, by model_export/make_moving.py",
         "fps": a.fps, "size": list(SIZE), "b_in": B_IN, "b_out": B_OUT, "slide": SLIDE, "frames": truth}) + "\n")
    print(f"{a.out}: {a.out.stat().st_size / 1e6:.2f} MB, {len(truth)} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
