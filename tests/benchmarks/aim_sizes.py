"""What the framing advice (edge/aim.py) is based on, measured (a script, not a test).

FER2013 PublicTest faces pasted into camera-sized frames (a smooth random background, as the test
fixtures are made) at a range of widths and under bad light, then the loop's own detector
(FaceDetector, default config: 640-px frames are downscaled to 320 first) and the bundled classifier:
- detected: the detector finds a box overlapping the pasted face (IoU >= 0.3);
- second look: of the missed faces, how many StillDetector's finer search finds (what `view` uses
  to say "move closer" rather than "no face");
- read (true box): the classifier right on the pasted box, detector or not;
- end to end: detected and read right on the detector's box.
Also at a comfortable size: face darkened against a bright frame (backlight), face contrast reduced,
the frame blurred, with the measure edge/aim.py uses for each.

    nice -n 10 .venv/bin/python tests/benchmarks/aim_sizes.py --faces 300
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from edge import aim  # noqa: E402
from edge.classify import EmotionClassifier, resolve_model  # noqa: E402
from edge.config import DetectConfig  # noqa: E402
from edge.detect import FaceDetector, StillDetector  # noqa: E402
from tests.conftest import FER_NPZ, iou  # noqa: E402  (the tests' data path and IoU; boxes here are never empty)


SECOND_LOOK_MAX = 60  # missed faces given the (slow) finer search per row


def canvas(h: int, w: int, seed: int, lo: int = 80, hi: int = 180) -> np.ndarray:
    """A soft textured background (as tests/fixtures/make_fixtures.py makes them)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(lo, hi, (h // 60 + 2, w // 60 + 2), dtype=np.uint8)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)


def paste(face48: np.ndarray, side: int, frame: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int, int]:
    h, w = frame.shape
    x = int(rng.integers(side // 4, w - side - side // 4))
    y = int(rng.integers(side // 4, h - side - side // 4))
    interp = cv2.INTER_AREA if side < 48 else cv2.INTER_CUBIC
    frame[y:y + side, x:x + side] = cv2.resize(face48, (side, side), interpolation=interp)
    return x, y, side, side


def run(images, labels, clf, det, still, frame_wh, side, seed, change=None):
    """One condition over all faces; returns the rates and the mean of the aim measures."""
    w, h = frame_wh
    rng = np.random.default_rng(seed)
    cfg = DetectConfig()
    n = found = second = read_true = e2e = 0
    looks = []
    for i, (img, lab) in enumerate(zip(images, labels)):
        frame = canvas(h, w, seed * 100003 + i)
        box = paste(img, side, frame, rng)
        if change is not None:
            frame = change(frame, box)
        n += 1
        p = clf.classify(frame, box)
        read_true += int(np.argmax(p.probs)) == lab
        looks.append(aim.look(frame, box, cfg))
        boxes = [b for b in det.detect(frame) if iou(b, box) >= 0.3]
        if boxes:
            found += 1
            e2e += int(np.argmax(clf.classify(frame, boxes[0]).probs)) == lab
        elif still is not None and n - found <= SECOND_LOOK_MAX:  # slow: the first misses only
            second += any(iou(b, box) >= 0.3 for b in still.second.detect(frame))
    return {"n": n, "detected": found / n, "second_look": second / max(1, min(SECOND_LOOK_MAX, n - found)), "read_true_box": read_true / n,
            "end_to_end": e2e / n, "read_when_detected": e2e / max(1, found),
            "face_mean": float(np.mean([lk.mean for lk in looks])), "face_std": float(np.mean([lk.std for lk in looks])),
            "ratio": float(np.mean([lk.mean / max(1.0, lk.frame_mean) for lk in looks])),
            "sharpness": float(np.median([lk.sharpness for lk in looks]))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=300, help="PublicTest faces per condition (evenly spaced over the split)")
    ap.add_argument("--only", choices=("sizes", "light", "detectable"), help="one part only")
    args = ap.parse_args()
    z = np.load(FER_NPZ)
    idx = np.flatnonzero(z["usage"] == 1)
    idx = idx[np.linspace(0, len(idx) - 1, args.faces).astype(int)]
    images, labels = z["images"][idx], z["labels"][idx].astype(int)
    clf = EmotionClassifier(resolve_model(""))
    det, still = FaceDetector(DetectConfig()), StillDetector(DetectConfig())
    t0 = time.time()
    print(f"# {args.faces} FER2013 PublicTest faces per row; model {clf.path.name}; detector default config", flush=True)
    if args.only in (None, "sizes"):
        for frame_wh, sides in (((640, 480), (24, 32, 36, 40, 44, 48, 52, 56, 60, 64, 72, 80, 96, 128)),
                                ((320, 240), (20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 80))):
            scale = aim.detector_scale(frame_wh[0], DetectConfig())
            print(f"\n## {frame_wh[0]}x{frame_wh[1]} frame (detector sees it at {scale:g}x)")
            print("| face px | detector px | detected | second look finds (of the first 60 missed) | read right (true box) | end to end | sharpness |")
            print("|---|---|---|---|---|---|---|")
            for side in sides:
                r = run(images, labels, clf, det, still, frame_wh, side, seed=side)
                print(f"| {side} | {side * scale:g} | {r['detected']:.0%} | {r['second_look']:.0%} | {r['read_true_box']:.1%} "
                      f"| {r['end_to_end']:.1%} | {r['sharpness']:.0f} |", flush=True)
                print("JSON " + json.dumps({"frame": frame_wh, "side": side, **r}), file=sys.stderr)
    if args.only in (None, "detectable"):
        # Faces Haar surely finds when large (the committed test faces, kept only if Haar finds them at
        # 160 px): the size alone decides, FER's tight crops and turned heads aside.
        faces = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)[40:200, 80:240]
                 for p in sorted((ROOT / "tests" / "fixtures" / "faces").glob("fer*_320x240.png"))]
        print(f"\n## the {len(faces)} committed test faces (Haar finds each at 160 px), 40 places each, 640x480 frame")
        print("| face px | detector px | detected | second look finds (of missed) |")
        print("|---|---|---|---|")
        for side in (32, 36, 40, 44, 48, 52, 56, 60, 64, 72, 80):
            rng = np.random.default_rng(side)
            n = found = second = tried = 0
            for i, f in enumerate(faces):
                for k in range(40):
                    frame = canvas(480, 640, 1000 * side + 50 * i + k)
                    h, w = frame.shape
                    x, y = int(rng.integers(side // 4, w - side - side // 4)), int(rng.integers(side // 4, h - side - side // 4))
                    frame[y:y + side, x:x + side] = cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA)
                    n += 1
                    if any(iou(b, (x, y, side, side)) >= 0.3 for b in det.detect(frame)):
                        found += 1
                    elif k < 8:  # the slow finer search on some of the missed
                        tried += 1
                        second += any(iou(b, (x, y, side, side)) >= 0.3 for b in still.second.detect(frame))
            print(f"| {side} | {side / 2:g} | {found / n:.0%} | {second}/{tried} tried |", flush=True)
    if args.only in (None, "light"):
        side, wh = 120, (640, 480)

        def backlight(k):
            def f(frame, box):
                x, y, w, h = box
                out = np.clip(frame.astype(np.float32) * 0.35 + 160, 0, 255).astype(np.uint8)  # bright window behind
                out[y:y + h, x:x + w] = np.clip(frame[y:y + h, x:x + w].astype(np.float32) * k, 0, 255).astype(np.uint8)
                return out
            return f

        def contrast(c):
            def f(frame, box):
                x, y, w, h = box
                face = frame[y:y + h, x:x + w].astype(np.float32)
                frame[y:y + h, x:x + w] = np.clip(face.mean() + (face - face.mean()) * c, 0, 255).astype(np.uint8)
                return frame
            return f

        def blur(s):
            return lambda frame, box: cv2.GaussianBlur(frame, (0, 0), s) if s else frame

        def dark(k):
            return lambda frame, box: (frame.astype(np.float32) * k).astype(np.uint8)

        for title, col, make, values in (("backlight: face darkened by k, frame brightened", "ratio", backlight, (1.0, 0.8, 0.6, 0.45, 0.35, 0.25)),
                                         ("low contrast: face contrast scaled by c", "face_std", contrast, (1.0, 0.6, 0.4, 0.3, 0.2, 0.12)),
                                         ("blur: Gaussian sigma (frame px)", "sharpness", blur, (0, 1.0, 2.0, 3.0, 4.0, 6.0)),
                                         ("dark: whole frame scaled by k", "face_mean", dark, (1.0, 0.5, 0.3, 0.2, 0.12))):
            print(f"\n## {title}; face {side} px in a {wh[0]}x{wh[1]} frame")
            print(f"| value | {col} | detected | read right (true box) | end to end |")
            print("|---|---|---|---|---|")
            for v in values:
                r = run(images, labels, clf, det, None, wh, side, seed=7, change=make(v))
                print(f"| {v:g} | {r[col]:.2f} | {r['detected']:.0%} | {r['read_true_box']:.1%} | {r['end_to_end']:.1%} |", flush=True)
                print("JSON " + json.dumps({"condition": title, "value": v, **r}), file=sys.stderr)
    print(f"\n# {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
