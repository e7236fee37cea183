"""Make a talking clip from one still photo of a face: the mouth opens and closes at speech rates.

No clip of a real person talking is available here, and a light must not read speech as an emotion
(issue 33). This makes a crude stand-in from any photo with one face (yours, or a test fixture): in
bursts of speech (1.5-4 s, pauses of 0.3-1.2 s) the mouth opens and closes at 3-6 syllables a second
(the lower face is pushed down below the lip line and the gap drawn dark), the brows lift a little on
the strongest syllables, the head drifts a few pixels, and with `--smile PHOTO` (the same person
smiling, the same framing) smiles are cross-faded in for about `--smile-share` of the time. Grey,
the photo's own size, mp4v. What it cannot show: real lip shapes, teeth, the tongue, head turns.
Usage: python -m model_export.make_talking PHOTO --out talk.mp4 [--seconds 60] [--smile PHOTO] [--seed 1]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from edge.argtypes import float_in, random_seed

FPS = 30.0
MOUTH_OPEN = 0.09       # widest opening, as a share of the face box's height
BROW_LIFT = 0.06        # brows lift this share of the face height at full stress
DRIFT = (3.0, 2.0)      # head drift amplitude in pixels (x, y)


def speech_envelope(n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Per frame, how open the mouth is (0..1): bursts of syllables at 3-6 Hz with pauses between."""
    env, i = np.zeros(n), 0
    while i < n:
        talk, pause = int(rng.uniform(1.5, 4.0) * fps), int(rng.uniform(0.3, 1.2) * fps)
        seg = np.arange(min(talk, n - i)) / fps
        env[i:i + len(seg)] = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * seg + rng.uniform(0, 6)), 0, None) * rng.uniform(0.5, 1.0)
        i += talk + pause
    return env


def smile_envelope(n: int, fps: float, share: float, rng: np.random.Generator) -> np.ndarray:
    """Per frame, how far a smile is faded in (0..1): spells of 2-5 s with half-second ramps, about `share` of the time."""
    out = np.zeros(n)
    if share <= 0:
        return out
    i = int(rng.uniform(2, 6) * fps)
    while i < n:
        d = int(rng.uniform(2, 5) * fps)
        a = np.ones(min(d, n - i))
        r = min(int(0.5 * fps), len(a) // 2)
        if r:
            a[:r], a[-r:] = np.linspace(0, 1, r), np.linspace(1, 0, r)
        out[i:i + len(a)] = a
        i += d + int(d * (1 - share) / share * rng.uniform(0.6, 1.4))
    return out


def face_box(gray: np.ndarray, where: str) -> tuple[int, int, int, int]:
    """The largest Haar face (SystemExit naming the photo when there is none)."""
    cc = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    faces = cc.detectMultiScale(gray, 1.1, 5, minSize=(40, 40))
    if len(faces) == 0:
        raise SystemExit(f"{where}: no face found")
    x, y, w, h = max(faces, key=lambda b: b[2])
    return int(x), int(y), int(w), int(h)


def lip_line(gray: np.ndarray, box: tuple[int, int, int, int]) -> int:
    """The row between the lips: the darkest row of the lower face's middle third."""
    x, y, w, h = box
    cx, half = x + w // 2, w // 8
    top = y + int(h * 0.65)
    band = gray[top:y + int(h * 0.92), cx - half:cx + half].mean(axis=1)
    return top + int(np.argmin(band)) + 2


def talking_frame(still: np.ndarray, box: tuple[int, int, int, int], lips: int, opening: float) -> np.ndarray:
    """The still with the mouth open by `opening` (0..1): the lower face pushed down, the gap dark."""
    f = still.copy()
    if opening <= 0.02:
        return f
    x, y, w, h = box
    bottom = min(f.shape[0], y + h + h // 16)
    gap = int(round(opening * h * MOUTH_OPEN))
    if gap < 1 or lips + gap >= bottom:
        return f
    lower = still[lips:bottom, x:x + w]
    f[lips + gap:bottom, x:x + w] = lower[:bottom - lips - gap]
    cv2.ellipse(f, (x + w // 2, lips + gap // 2), (int(w * 0.18 * (0.8 + 0.2 * opening)), max(1, gap // 2)), 0, 0, 360, 35, -1)
    lift = int(round(max(0.0, opening - 0.7) * h * BROW_LIFT))
    if lift:
        b0, b1 = max(lift, y + int(h * 0.22) - 4), y + int(h * 0.34)
        f[b0 - lift:b1 - lift, x:x + w] = still[b0:b1, x:x + w]
    return f


def render(still: np.ndarray, out: Path, seconds: float, seed: int, smile: np.ndarray | None = None,
           smile_share: float = 0.25, fps: float = FPS, name: str = "photo") -> dict:
    """Write the clip; returns what it holds (frames, the share of frames talking and smiling).
    `name`: the photo's, for the error when it has no face."""
    box = face_box(still, name)
    lips = lip_line(still, box)
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    env = speech_envelope(n, fps, rng)
    sm = smile_envelope(n, fps, smile_share, rng) if smile is not None else np.zeros(n)
    h, w = still.shape
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h), isColor=False)
    if not writer.isOpened():
        raise SystemExit(f"{out}: cannot write a video there")
    for k in range(n):
        base = still if sm[k] <= 0 else cv2.addWeighted(still, 1 - sm[k], smile, sm[k], 0)
        f = talking_frame(base, box, lips, env[k] * (1 - 0.5 * sm[k]))
        t = k / fps
        m = np.float32([[1, 0, DRIFT[0] * np.sin(2 * np.pi * 0.13 * t)], [0, 1, DRIFT[1] * np.sin(2 * np.pi * 0.07 * t)]])
        writer.write(cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REPLICATE))
    writer.release()
    return {"frames": n, "talking": round(float((env > 0.02).mean()), 3), "smiling": round(float((sm > 0.5).mean()), 3)}


def _grey(path: Path) -> np.ndarray:
    g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if g is None:
        raise SystemExit(f"{path}: not an image OpenCV can read")
    return g


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("photo", type=Path, help="a photo with one face, at rest")
    p.add_argument("--out", type=Path, required=True, help="the clip (.mp4)")
    p.add_argument("--seconds", type=float_in(1.0, 600.0), default=60.0)
    p.add_argument("--smile", type=Path, help="the same person smiling, framed as PHOTO: smiles are faded in")
    p.add_argument("--smile-share", type=float_in(0.0, 0.9), default=0.25, help="about this share of the time smiling")
    p.add_argument("--seed", type=random_seed, default=1)
    a = p.parse_args(argv)
    still = _grey(a.photo)
    smile = None
    if a.smile is not None:
        smile = _grey(a.smile)
        if smile.shape != still.shape:
            raise SystemExit(f"{a.smile}: {smile.shape[1]}x{smile.shape[0]}, not the size of {a.photo} ({still.shape[1]}x{still.shape[0]})")
    made = render(still, a.out, a.seconds, a.seed, smile, a.smile_share, name=str(a.photo))
    print(f"{a.out}: {made['frames']} frames at {FPS:g} fps; talking {made['talking']:.0%} of frames, smiling {made['smiling']:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
