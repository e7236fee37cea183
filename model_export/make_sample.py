"""Make the bundled demo clip: FER2013 PrivateTest faces, upscaled and drifting on 640x480 frames.

The clip is ours to ship: no outside photos, only faces from the project's own test split, and it
has a scripted mood timeline (see SCRIPT) that the tests and the README demo rely on.
Usage: python -m model_export.make_sample --data ../shared/data/fer2013/fer2013.npz [--model M.tflite]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from edge.argtypes import random_seed
from model_export.data import FER_LABELS, load_dataset

FPS = 15
SIZE = (640, 480)
# (emotion or None for an empty room, seconds, face side in px)
SCRIPT: list[tuple[str | None, float, int]] = [
    ("neutral", 3.0, 200),
    ("happy", 4.0, 210),
    (None, 6.5, 0),
    ("surprise", 4.0, 200),
    ("sad", 4.5, 220),
    ("happy", 5.0, 200),
]


def _background(rng: np.random.Generator) -> np.ndarray:
    """A soft 'room': smooth gradient plus a little blurred texture (compresses well)."""
    w, h = SIZE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = 90 + 40 * (xx / w) + 25 * np.sin(yy / h * np.pi)
    tex = cv2.GaussianBlur(rng.normal(0, 12, (h, w)).astype(np.float32), (0, 0), 6)
    return np.clip(bg + tex, 0, 255).astype(np.uint8)


def _haar():
    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


def _detected(cc, face: np.ndarray, side: int) -> bool:
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((SIZE[1] // 2, SIZE[0] // 2), 110, np.uint8)
    small = cv2.resize(big, (side // 2, side // 2), interpolation=cv2.INTER_AREA)
    y0, x0 = (canvas.shape[0] - small.shape[0]) // 2, (canvas.shape[1] - small.shape[1]) // 2
    canvas[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return len(cc.detectMultiScale(canvas, 1.1, 5, minSize=(30, 30))) == 1


def pick_faces(images: np.ndarray, labels: np.ndarray, model: str | None, seed: int) -> dict[str, list[np.ndarray]]:
    """Per emotion, faces Haar finds (and, with --model, that the model gets right with confidence)."""
    cc = _haar()
    clf = None
    if model:
        from edge.classify import EmotionClassifier
        clf = EmotionClassifier(model)
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    for name in {s[0] for s in SCRIPT if s[0]}:
        idx = np.flatnonzero(labels == FER_LABELS.index(name))
        rng.shuffle(idx)
        chosen = []
        for i in idx:
            face = images[i]
            if not _detected(cc, face, 200):
                continue
            if clf is not None:
                p = clf.classify_face(face)
                if p.top != name or p.confidence < 0.6:
                    continue
            chosen.append(face)
            if len(chosen) == 2:
                break
        out[name] = chosen
    return out


def render(faces: dict[str, list[np.ndarray]], out: Path, seed: int) -> list[dict]:
    """Write the clip; returns the timeline (start/end seconds and expected mood) for tests."""
    rng = np.random.default_rng(seed)
    bg = _background(rng)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE, isColor=False)
    if not writer.isOpened():
        raise SystemExit(f"cannot write {out}")
    timeline, t0, used = [], 0.0, {k: 0 for k in faces}
    for name, secs, side in SCRIPT:
        n = int(round(secs * FPS))
        face = None
        if name:
            face = faces[name][used[name] % len(faces[name])]
            used[name] += 1
        cx, cy = rng.integers(220, 420), rng.integers(200, 280)
        for k in range(n):
            frame = bg.copy()
            if face is not None:
                s = int(side * (1 + 0.04 * np.sin(k / 9)))
                big = cv2.resize(face, (s, s), interpolation=cv2.INTER_CUBIC)
                x = int(cx + 25 * np.sin(k / 23) - s / 2)
                y = int(cy + 10 * np.sin(k / 17) - s / 2)
                frame[y:y + s, x:x + s] = big
            writer.write(frame)
        timeline.append({"start": round(t0, 3), "end": round(t0 + n / FPS, 3), "mood": name or "none"})
        t0 += n / FPS
    writer.release()
    return timeline


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", help="only use faces this .tflite classifies correctly (clear demo)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "edge" / "samples" / "sample.mp4")
    p.add_argument("--seed", type=random_seed, default=7)
    a = p.parse_args(argv)
    ds = load_dataset(a.data)
    images, labels = ds.split("PrivateTest")
    faces = pick_faces(images, labels, a.model, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    timeline = render(faces, a.out, a.seed)
    a.out.with_suffix(".json").write_text(json.dumps(
        {"source": "FER2013 PrivateTest faces, upscaled and placed on a synthetic background by model_export/make_sample.py",
         "fps": FPS, "size": list(SIZE), "timeline": timeline}, indent=2) + "\n")
    print(f"{a.out}: {a.out.stat().st_size / 1e6:.2f} MB, {timeline[-1]['end']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
