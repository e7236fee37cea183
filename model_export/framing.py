"""`emotion-export framing`: what the device's face crop costs on FER2013 faces.

FER2013's 48x48 faces were cropped and centred by its makers; on a device the crop comes from a Haar
box grown by the model's `input.crop_margin`. This pastes each face, upscaled, onto a plain frame,
finds it with the device's own detector and classifies it as `photo` does, so a crop margin (or the
multi-crop average) can be chosen with its price on the training data's own framing in view.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

import numpy as np

from edge.argtypes import float_list, int_in
from edge.contract import CROP_MARGIN_RANGE
from edge.errors import DataError
from model_export.data import SPLITS

FRAME_BACKGROUND = 110
"""Mid-gray around the pasted face: no edges for Haar to mistake for a face."""


@dataclass(frozen=True)
class FramingRow:
    margin: float
    accuracy: float  # on the faces Haar found, classified from the device's crop


@dataclass(frozen=True)
class Framing:
    split: str
    n: int
    found: int
    scale: int
    multi_crop: bool
    dataset_crop_accuracy: float  # the same found faces, classified from the dataset's own 48x48 crop
    rows: list[FramingRow]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="FER2013 .npz or fer2013.csv")
    p.add_argument("--model", default="", help="NAME.tflite (default: the bundled model)")
    p.add_argument("--split", default="PrivateTest", choices=SPLITS)
    p.add_argument("--limit", type=int_in(0), default=1500, help="only the first N faces of the split (0 = all)")
    p.add_argument("--scale", type=int_in(2, 10), default=4, help="upscale each face this many times onto its frame")
    p.add_argument("--crop-margin", type=float_list(*CROP_MARGIN_RANGE), default=None, metavar="M[,M...]",
                   help="crop margins to compare (default: the model's input.crop_margin); Haar runs once per face")
    p.add_argument("--single-crop", action="store_true",
                   help="one crop per face, as the loop classifies a frame (default: four framings, as `photo`)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def paste(face: np.ndarray, scale: int) -> np.ndarray:
    """The face upscaled `scale` times, centred on a frame a third larger each way."""
    import cv2

    big = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    h, w = big.shape
    pad_y, pad_x = h // 3, w // 3
    frame = np.full((h + 2 * pad_y, w + 2 * pad_x), FRAME_BACKGROUND, np.uint8)
    frame[pad_y:pad_y + h, pad_x:pad_x + w] = big
    return frame


def measure(images: np.ndarray, labels_fer: np.ndarray, model: str = "", margins: list[float] | None = None,
            scale: int = 4, multi_crop: bool = True, split: str = "PrivateTest") -> Framing:
    from edge.classify import EmotionClassifier, resolve_model
    from edge.config import DetectConfig
    from edge.detect import FaceDetector
    from model_export.evaluate import map_labels

    path = resolve_model(model)
    det = FaceDetector(DetectConfig())
    with EmotionClassifier(path) as plain:
        y, keep = map_labels(labels_fer, plain.labels)
        own = plain.info.input.crop_margin
        margins = [own] if not margins else list(margins)
        clfs = [EmotionClassifier(path, multi_crop=multi_crop, crop_margin=m) for m in margins]
        try:
            right = np.zeros(len(margins), np.int64)
            direct = found = 0
            for img, t, ok in zip(images, y, keep):
                if not ok:
                    continue  # a class the model cannot name
                frame = paste(img, scale)
                boxes = det.detect(frame)
                if not boxes:
                    continue
                found += 1
                direct += int(np.argmax(plain.classify_face(img).probs)) == t
                for k, clf in enumerate(clfs):
                    right[k] += int(np.argmax(clf.classify(frame, boxes[0]).probs)) == t
        finally:
            for c in clfs:
                c.close()
    n = int(keep.sum())
    if found == 0:
        raise DataError(f"Haar found no face in {n} {split} faces (is --scale too small?)")
    return Framing(split, n, found, scale, multi_crop, direct / found,
                   [FramingRow(m, float(r) / found) for m, r in zip(margins, right)])


def run(args: argparse.Namespace) -> int:
    from model_export.evaluate import load_split

    images, labels, _ = load_split(args.data, args.split, limit=args.limit)
    res = measure(images, labels, args.model, args.crop_margin, args.scale, not args.single_crop, args.split)
    if args.json:
        print(json.dumps(asdict(res), indent=1))
        return 0
    how = "four framings averaged" if res.multi_crop else "one crop"
    print(f"{res.split}: {res.n} faces upscaled {res.scale}x onto frames; Haar found {res.found} ({res.found / res.n:.0%})")
    print(f"  on those, the dataset's own crop: {res.dataset_crop_accuracy:.1%}")
    for r in res.rows:
        print(f"  Haar box + crop margin {r.margin:g} ({how}): {r.accuracy:.1%}")
    return 0
