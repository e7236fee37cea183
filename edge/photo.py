"""Still images through the loop's own detector and classifier (no smoothing): results, drawings, crops.

Owners check a device or a new model on their own pictures with this, so every step reuses the
loop's parts (FaceDetector, EmotionClassifier, edge.preprocess) rather than a second implementation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from edge.errors import ConfigError, SourceError
from edge.frames import as_gray
from edge.imagecheck import ImageRefused, check_image
from edge.led import hex_to_rgb
from edge.preprocess import crop_face, resize_face
from edge.safeio import IMAGE_MAX_BYTES, read_bytes, write_output
from edge.text import printable
from edge.types import Box, Prediction

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
"""What a folder is expanded to; a file named on the command line is tried whatever its suffix."""

JPEG_MAGIC = b"\xff\xd8\xff"


# -- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceResult:
    """One face: its box in image pixels and the classifier's unsmoothed prediction."""

    box: Box
    prediction: Prediction

    @property
    def emotion(self) -> str:
        return self.prediction.top

    @property
    def confidence(self) -> float:
        return self.prediction.confidence

    @property
    def probabilities(self) -> dict[str, float]:
        """label -> probability, in the model's label order."""
        return self.prediction.as_dict()

    def to_json(self) -> dict:
        return {"box": [int(v) for v in self.box], "emotion": self.emotion,
                "confidence": self.confidence, "probabilities": self.probabilities}


@dataclass(frozen=True)
class PhotoResult:
    """Every face found in one image (an empty tuple when there is none)."""

    file: str
    faces: tuple[FaceResult, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {"file": self.file, "faces": [f.to_json() for f in self.faces]}

    def to_text(self) -> str:
        """`photo.jpg: 2 faces` then one indented line per face with every probability."""
        n = len(self.faces)
        head = f"{printable(self.file)}: {'no' if n == 0 else n} face{'' if n == 1 else 's'}"
        lines = [head]
        for f in self.faces:
            x, y, w, h = f.box
            probs = ", ".join(f"{lab} {p:.2f}" for lab, p in f.probabilities.items())
            lines.append(f"  [{x} {y} {w} {h}] {f.emotion} {f.confidence:.2f} ({probs})")
        return "\n".join(lines)


@dataclass(frozen=True)
class LoadedImage:
    """An image as read from disk: 8-bit BGR when the file had colour (else None) and its gray version."""

    path: Path
    gray: np.ndarray
    color: np.ndarray | None


# -- inputs -----------------------------------------------------------------------------------
def expand_inputs(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Files as given, folders as their sorted images (non-recursive); plus one problem line per bad path."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            try:
                found = sorted(c for c in p.iterdir() if c.suffix.lower() in PHOTO_SUFFIXES and c.is_file())
            except OSError as e:
                problems.append(f"{p}: cannot list folder ({e.strerror or e})")
                continue
            if not found:
                problems.append(f"{p}: folder has no images ({', '.join(sorted(PHOTO_SUFFIXES))})")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            problems.append(f"{p}: no such file or folder")
    return files, problems


def _to_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    """16-bit and float images scaled to 8 bits (PNG/TIFF from scanners and raw converters)."""
    if img.dtype == np.uint8:
        return img
    if img.dtype != np.uint16 and img.dtype.kind != "f":
        raise SourceError(f"{path}: unsupported pixel type {img.dtype} (use 8- or 16-bit JPEG, PNG or BMP)")
    out = np.empty(img.shape, np.uint8)
    for rows in _row_blocks(img):  # in blocks: a wide temporary of the whole image could exceed the RAM
        if img.dtype == np.uint16:
            out[rows] = (img[rows].astype(np.uint32) + 128) // 257
        else:
            out[rows] = np.clip(np.nan_to_num(img[rows]) * 255.0 + 0.5, 0, 255)
    return out


def _flatten_alpha(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite over white: transparent areas hold arbitrary colour (often black) a viewer never shows."""
    res = np.empty(color.shape, np.uint8)
    for rows in _row_blocks(color):  # float32 temporaries one block at a time, not 12 bytes per pixel
        a = alpha[rows].astype(np.float32)[:, :, None] / 255.0
        out = color[rows].astype(np.float32) * a + 255.0 * (1.0 - a)
        res[rows] = np.clip(out + 0.5, 0, 255)
    return res


def _row_blocks(img: np.ndarray, pixels: int = 1 << 20) -> list[slice]:
    """Row slices of about `pixels` pixels each, so per-pixel temporaries stay a few MB."""
    step = max(1, pixels // max(1, img.shape[1] if img.ndim > 1 else 1))
    return [slice(i, i + step) for i in range(0, img.shape[0], step)]


def read_image(path: str | Path) -> LoadedImage:
    """Decode any image OpenCV reads; JPEGs are turned upright by their EXIF orientation like a viewer does.

    Raises SourceError naming the file for a missing, empty, unreadable or non-image file.
    """
    path = Path(path)
    try:
        data = np.frombuffer(read_bytes(path, IMAGE_MAX_BYTES), dtype=np.uint8)  # no FIFO, no device
    except (OSError, ValueError) as e:
        raise SourceError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if data.size == 0:
        raise SourceError(f"{path}: empty file")
    try:
        check_image(data)  # dimensions from the header before decoding: no decompression bombs
    except ImageRefused as e:
        raise SourceError(f"{path}: {e}") from None
    # IMREAD_UNCHANGED keeps alpha and 16 bits but ignores EXIF orientation; JPEG has no alpha, so
    # ANYCOLOR|ANYDEPTH there gets the orientation applied.
    is_jpeg = data[:3].tobytes() == JPEG_MAGIC
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH if is_jpeg else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise SourceError(f"{path}: not an image OpenCV can read (JPEG, PNG or BMP)")
    img = _to_uint8(img, path)
    color: np.ndarray | None = None
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        gray = img
    elif img.ndim == 3 and img.shape[2] == 2:  # gray + alpha
        gray = _flatten_alpha(img[:, :, :1], img[:, :, 1])[:, :, 0]
    elif img.ndim == 3 and img.shape[2] in (3, 4):
        color = _flatten_alpha(img[:, :, :3], img[:, :, 3]) if img.shape[2] == 4 else img
        gray = cv2.cvtColor(color, cv2.COLOR_BGR2GRAY)
    else:
        raise SourceError(f"{path}: unsupported image layout {img.shape}")
    return LoadedImage(path, np.ascontiguousarray(gray), color)


# -- analysis ---------------------------------------------------------------------------------
OWN_FACE_SIDE_RATIO = 2.0
"""In a photo of one person (`calibrate --photos`), a face at least this many times as wide as the next
one is theirs and the others are background (a poster, a passer-by); closer sizes are ambiguous."""


def own_face(boxes: Sequence[Box]) -> Box | None:
    """The person's face among `boxes` (largest first, as FaceDetector returns them): the only one, or
    the largest where it dwarfs the rest; None when there is none or it is not clear which."""
    if not boxes:
        return None
    if len(boxes) == 1 or boxes[0][2] >= OWN_FACE_SIDE_RATIO * boxes[1][2]:
        return boxes[0]
    return None


class PhotoAnalyzer:
    """Detector + classifier (+ a calibration stage) on one still image; `detector=None` treats each image
    as one cropped face; `calibration` None: the model's own answers."""

    def __init__(self, classifier, detector=None, calibration=None) -> None:
        self.classifier = classifier
        self.detector = detector
        self.calibration = calibration
        spec = classifier.info.input
        self._w, self._h, self._margin = spec.width, spec.height, spec.crop_margin

    @property
    def cropped(self) -> bool:
        return self.detector is None

    def analyse(self, gray: np.ndarray) -> list[FaceResult]:
        """Faces largest first (at most detect.max_faces), each with its prediction; FrameError for a bad image."""
        gray = as_gray(gray, "image")
        if self.detector is None:
            h, w = gray.shape
            return [FaceResult((0, 0, w, h), self._calibrated(self.classifier.classify_face(gray), gray, (0, 0, w, h)))]
        return [FaceResult(tuple(int(v) for v in box), self._calibrated(self.classifier.classify(gray, box), gray, box))  # type: ignore[arg-type]
                for box in self.detector.detect(gray)]

    def _calibrated(self, pred: Prediction, gray: np.ndarray, box: Box) -> Prediction:
        if self.calibration is None:
            return pred
        look = self.calibration.looker.of(gray, box) if self.calibration.needs_look else None
        return self.calibration.apply(pred, look)

    def model_input(self, gray: np.ndarray, box: Box) -> np.ndarray:
        """The uint8 HxW face exactly as the model sees it at its own crop margin (the single-crop input;
        multi-crop adds three more framings around it)."""
        gray = as_gray(gray, "image")
        face = gray if self.detector is None else crop_face(gray, box, self._margin)
        out = np.empty((self._h, self._w), np.uint8)
        return resize_face(face, self._w, self._h, out=out)


# -- drawing and writing ----------------------------------------------------------------------
def bgr(color_hex: str) -> tuple[int, int, int]:
    r, g, b = hex_to_rgb(color_hex)
    return (int(round(b * 255)), int(round(g * 255)), int(round(r * 255)))


def annotate(image: np.ndarray, faces: Sequence[FaceResult], colors: dict[str, str]) -> np.ndarray:
    """A BGR copy with each box and `emotion 0.81` drawn in that emotion's LED colour (white if none)."""
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    h, w = out.shape[:2]
    side = min(h, w)
    thick = max(2, int(round(side / 200)))
    scale = max(0.35, side / 700)
    tthick = max(1, int(round(scale * 1.5)))  # thinner than the box: small labels stay legible
    font = cv2.FONT_HERSHEY_SIMPLEX
    for f in faces:
        x, y, bw, bh = f.box
        col = bgr(colors.get(f.emotion, "#ffffff"))
        # a dark rim under the coloured line keeps white/yellow boxes visible on light images
        cv2.rectangle(out, (x, y), (x + bw - 1, y + bh - 1), (0, 0, 0), thick + 2)
        cv2.rectangle(out, (x, y), (x + bw - 1, y + bh - 1), col, thick)
        text = f"{f.emotion} {f.confidence:.2f}"
        (tw, th), base = cv2.getTextSize(text, font, scale, tthick)
        ty = y - base - 2 if y - th - base - 4 >= 0 else y + th + 2  # above the box, else inside it
        tx = min(max(0, x), max(0, w - tw - 2))
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw + 2, ty + base), col, -1)
        lum = 0.114 * col[0] + 0.587 * col[1] + 0.299 * col[2]
        cv2.putText(out, text, (tx + 1, ty), font, scale, (0, 0, 0) if lum > 128 else (255, 255, 255), tthick, cv2.LINE_AA)
    return out


def write_image(path: Path, image: np.ndarray) -> None:
    """Encode by the file's suffix and write; SourceError naming the file when that fails."""
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", image)
    except cv2.error:
        ok = False
    if not ok:
        raise SourceError(f"{path}: cannot encode a {path.suffix or 'suffix-less'} image")
    try:
        write_output(path, buf.tobytes())  # temp file + rename: never writes through a symlink
    except OSError as e:
        raise SourceError(f"{path}: cannot write ({e.strerror or e})") from None


def check_output_dir(out_dir: str | Path, inputs: Iterable[Path], flag: str) -> Path:
    """The output folder (created), refusing a file or any input's own folder (inputs are never overwritten)."""
    d = Path(out_dir).expanduser()
    if d.exists() and not d.is_dir():
        raise ConfigError(f"{flag} {d}: exists and is not a folder")
    real = d.resolve()
    for p in inputs:
        if p.resolve().parent == real:
            raise ConfigError(f"{flag} {d}: is the folder of input {p}; choose another folder so inputs are never overwritten")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {d}: cannot create folder ({e.strerror or e})") from None
    return d


class OutputNames:
    """Output names mirror the input names; a second input with the same stem gets `stem-2`, `stem-3`..."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def stem(self, path: Path) -> str:
        name, n = path.stem, 1
        while name in self._used:
            n += 1
            name = f"{path.stem}-{n}"
        self._used.add(name)
        return name
