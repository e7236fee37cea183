"""Training/evaluation data: FER2013 in the formats users have, with the official splits.

Formats (picked by `load_dataset` from what the path is):
- our `.npz` (see shared/data/fer2013/README.md), FER+ votes included;
- Kaggle `fer2013.csv` (`emotion,pixels,Usage`), optionally with FER+ vote columns
  (`neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF`) added;
- an image folder `ROOT/train/<class>/*` and `ROOT/test/<class>/*` (class folder names are the
  FER names, case-insensitive). Splits for folders: `train` is Training; a `val`/`validation`
  folder is PublicTest; in `test`, file names starting `PublicTest_`/`PrivateTest_` decide;
  otherwise `test` is PrivateTest and, when no PublicTest exists at all, 10 % of `train`
  (chosen by a hash of the file name, so stable across runs and machines) becomes PublicTest.
- a folder holding `fer2013.npz` or `fer2013.csv` (e.g. `../shared/data/fer2013/`).

Labels from FER+ votes (`labels_from`): `ferplus-majority` keeps rows whose most-voted FER
emotion is untied and gets at least as many votes as contempt/unknown/NF (other rows are
dropped); `ferplus-soft` does the same and also keeps `Dataset.soft`, the vote share over the
7 emotions (soft targets).
"""
from __future__ import annotations

import csv
import os
import stat
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.contract import FER_LABELS  # the one list of FER2013's labels, shared with edge/
from edge.errors import DataError

SPLITS = ("Training", "PublicTest", "PrivateTest")
TRAINING, PUBLIC_TEST, PRIVATE_TEST = range(len(SPLITS))  # the npz's `usage` codes
LABEL_SOURCES = ("fer2013", "ferplus-majority", "ferplus-soft")
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
# FER order index -> FER+ vote column index
_NOT_EMOTION = [FERPLUS_COLUMNS.index(c) for c in ("contempt", "unknown", "NF")]
_FER_FROM_FERPLUS = np.array([FERPLUS_COLUMNS.index(c) for c in
                              ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")])
_CLASS_ALIASES = {
    "angry": 0, "anger": 0, "disgust": 1, "disgusted": 1, "fear": 2, "fearful": 2, "scared": 2,
    "happy": 3, "happiness": 3, "sad": 4, "sadness": 4, "surprise": 5, "surprised": 5, "neutral": 6,
}


def fer_index(name: str) -> int | None:
    """FER class index of a label or class-folder name, synonyms included (anger, happiness, ...)."""
    return _CLASS_ALIASES.get(name.strip().lower())


def canonical(name: str) -> str:
    """A class or label name as the data and models use it: FER's name for FER's classes and their synonyms
    (Happiness -> happy), any other name in lower case (Smile -> smile)."""
    i = fer_index(name)
    return FER_LABELS[i] if i is not None else name.strip().lower()


def name_index(names: tuple[str, ...], label: str) -> int | None:
    """Index in a data set's class names of a model's label (by name or FER synonym), or None."""
    c = canonical(label)
    return names.index(c) if c in names else None


IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
PUBLIC_FROM_TRAIN = 0.10


@dataclass
class Dataset:
    """uint8 images (N, H, W), int labels (N,) indexing `names`, split index per row (SPLITS).

    `names` is FER_LABELS for FER2013 files and for folders of FER classes (so labels are FER indices, as
    FER+ votes assume); a folder with classes of its own (train/smile, train/frown) names its classes,
    FER's first in FER order, then the others in alphabetical order."""

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    source: str
    votes: np.ndarray | None = None  # FER+ votes (N, 10) where known
    soft: np.ndarray | None = None  # (N, 7) float32 target distribution (ferplus-soft)
    public_from: str = "the data's own PublicTest rows"  # where the selection split came from (told to the user by train)
    names: tuple[str, ...] = FER_LABELS  # class name of each label index

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        mask = self._mask(name)
        return self.images[mask], self.labels[mask]

    def _mask(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise DataError(f"{self.source}: unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return self.usage == SPLITS.index(name)

    def counts(self) -> dict[str, int]:
        return {s: int((self.usage == i).sum()) for i, s in enumerate(SPLITS)}


def apply_labels(ds: Dataset, labels_from: str) -> Dataset:
    """Relabel from FER+ votes (majority or soft), dropping rows with no usable emotion vote."""
    if labels_from == "fer2013":
        return ds
    if labels_from not in LABEL_SOURCES:
        raise DataError(f"unknown label source {labels_from!r}; use one of {', '.join(LABEL_SOURCES)}")
    if ds.votes is None:
        raise DataError(f"{ds.source}: has no FER+ vote columns, so --labels-from {labels_from} cannot be used")
    emo = ds.votes[:, _FER_FROM_FERPLUS].astype(np.float32)
    total = emo.sum(axis=1)
    top = emo.argmax(axis=1)
    top_votes = emo.max(axis=1)
    tied = (emo == top_votes[:, None]).sum(axis=1) > 1
    # the most-voted of all 10 columns must be an emotion (not contempt/unknown/NF)
    other_max = ds.votes[:, _NOT_EMOTION].max(axis=1)
    keep = (total > 0) & ~tied & (top_votes >= other_max)
    soft = emo[keep] / total[keep, None] if labels_from == "ferplus-soft" else None
    return Dataset(ds.images[keep], top[keep].astype(np.int64), ds.usage[keep], ds.source,
                   ds.votes[keep], soft, ds.public_from, ds.names)


NPZ_MAX_BYTES = 1 << 30
"""Largest .npz accepted, its arrays decompressed (FER2013 with FER+ votes: about 90 MB). A few hundred KB
of zip can declare gigabytes of zeros; the members' declared sizes are checked before any is read, and
zipfile never inflates a member past its declared size."""


def _open_regular(path: Path, text: bool = False):
    """The file opened for reading if it is a regular file: a FIFO named *.csv or *.png would block open()
    for ever, a device never ends; refused in one line naming it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device or socket"
        raise DataError(f"{path}: {kind}, not a regular file")
    os.set_blocking(fd, True)
    return open(fd, newline="", encoding="utf-8") if text else open(fd, "rb")


def _check_npz_size(path: Path, f) -> None:
    """Refuse an .npz whose arrays would decompress to more than NPZ_MAX_BYTES (a zip bomb)."""
    try:
        with zipfile.ZipFile(f) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise DataError(f"{path}: not a FER2013 .npz file (not a zip archive: {e})") from None
    if total > NPZ_MAX_BYTES:
        raise DataError(f"{path}: its arrays would take {total / 1e6:,.0f} MB decompressed, more than the "
                        f"{NPZ_MAX_BYTES / 1e6:,.0f} MB allowed; not a FER2013 .npz file (or split it)")
    f.seek(0)


def load_npz(path: Path) -> Dataset:
    """Our compact FER2013 file (see shared/data/fer2013/README.md)."""
    try:
        with _open_regular(path) as f:
            _check_npz_size(path, f)
            with np.load(f, allow_pickle=False) as z:
                images, labels, usage = z["images"], z["labels"].astype(np.int64), z["usage"].astype(np.int64)
                votes = z["ferplus_votes"] if "ferplus_votes" in z.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a FER2013 .npz file ({e})") from None
    if images.ndim != 3 or images.dtype != np.uint8 or len(labels) != len(images) or len(usage) != len(images):
        raise DataError(f"{path}: 'images' must be uint8 (N, H, W) with one label and usage per image")
    bad = np.flatnonzero((labels < 0) | (labels >= len(FER_LABELS)) | (usage < 0) | (usage >= len(SPLITS)))
    if len(bad):
        raise DataError(f"{path}: row {int(bad[0])}: label or usage out of range")
    return Dataset(images, labels, usage, str(path), votes)


def _usage_index(value: str) -> int | None:
    for i, s in enumerate(SPLITS):
        if value.strip().lower() == s.lower():
            return i
    return None


def _open_csv(path: Path):
    return _open_regular(path, text=True)


@dataclass
class _CsvColumns:
    """Where each needed field sits in a row, from the header line."""

    emotion: int
    pixels: int
    usage: int
    votes: list[int] | None  # FER+ vote columns in FERPLUS_COLUMNS order, when the file has them
    header_len: int

    @property
    def need(self) -> int:
        """Fields a row must have to reach every column used."""
        return max([self.emotion, self.pixels, self.usage] + (self.votes or [])) + 1


def _csv_columns(path: Path, reader) -> _CsvColumns:
    """Read the header line: emotion, pixels and Usage are required; FER+ vote columns all or none."""
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file (expected a header 'emotion,pixels,Usage')") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise DataError(f"{path} line 1: not a CSV file ({e})") from None
    cols = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in ("emotion", "pixels", "Usage") if c not in cols]
    if missing:
        raise DataError(f"{path} line 1: missing column(s) {', '.join(missing)} "
                        f"(expected 'emotion,pixels,Usage'; found {','.join(header)[:80]})")
    vote_cols = [cols.get(c) for c in FERPLUS_COLUMNS]
    if any(v is not None for v in vote_cols) and not all(v is not None for v in vote_cols):
        absent = [c for c, v in zip(FERPLUS_COLUMNS, vote_cols) if v is None]
        raise DataError(f"{path} line 1: FER+ vote columns incomplete (missing {', '.join(absent)})")
    votes = vote_cols if vote_cols[0] is not None else None
    return _CsvColumns(cols["emotion"], cols["pixels"], cols["Usage"], votes, len(header))  # type: ignore[arg-type]


def _csv_emotion(text: str, where: str) -> int:
    try:
        emotion = int(text)
    except ValueError:
        raise DataError(f"{where}: emotion {text[:20]!r} is not an integer 0..6") from None
    if not 0 <= emotion < len(FER_LABELS):
        raise DataError(f"{where}: emotion {emotion} is not in 0..6")
    return emotion


def _csv_usage(text: str, where: str) -> int:
    u = _usage_index(text)
    if u is None:
        raise DataError(f"{where}: Usage {text[:20]!r} is not one of {', '.join(SPLITS)}")
    return u


def _csv_pixels(text: str, side: int, where: str) -> np.ndarray:
    """A square uint8 image; side 0 means the first row, which sets the size for the rest."""
    try:
        px = np.array(text.split(), dtype=np.int32)
    except ValueError:
        raise DataError(f"{where}: pixels must be space-separated integers 0..255") from None
    except OverflowError:  # 99999999999999999999: too large for any integer type
        raise DataError(f"{where}: pixel values must be 0..255") from None
    if side == 0:
        side = int(round(np.sqrt(px.size)))
        if side < 8 or side * side != px.size:
            raise DataError(f"{where}: {px.size} pixel values is not a square image (FER2013 has 2304 = 48x48)")
    elif px.size != side * side:
        raise DataError(f"{where}: {px.size} pixel values, expected {side * side} ({side}x{side})")
    if px.min() < 0 or px.max() > 255:
        raise DataError(f"{where}: pixel values must be 0..255")
    return px.astype(np.uint8).reshape(side, side)


def _csv_votes(row: list[str], columns: list[int], where: str) -> list[int]:
    try:
        return [int(float(row[c])) for c in columns]
    except (ValueError, OverflowError):  # 'x', or 1e999 (infinite)
        raise DataError(f"{where}: FER+ vote columns must be integers") from None


def _csv_rows(path: Path, reader, cols: _CsvColumns) -> Dataset:
    """Every data row checked and decoded; errors name the file and line."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    usage: list[int] = []
    votes: list[list[int]] = []
    line = 1
    try:
        for line, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            where = f"{path} line {line}"
            if len(row) < cols.need:
                raise DataError(f"{where}: {len(row)} fields, expected {cols.header_len}")
            emotion = _csv_emotion(row[cols.emotion], where)
            u = _csv_usage(row[cols.usage], where)
            image = _csv_pixels(row[cols.pixels], images[0].shape[0] if images else 0, where)
            if cols.votes is not None:
                votes.append(_csv_votes(row, cols.votes, where))
            images.append(image)
            labels.append(emotion)
            usage.append(u)
    except csv.Error as e:
        raise DataError(f"{path} line {line}: malformed CSV ({e})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} line {line}: not UTF-8 text") from None
    if not images:
        raise DataError(f"{path}: no data rows")
    return Dataset(np.stack(images), np.array(labels, np.int64), np.array(usage, np.int64), str(path),
                   np.array(votes, np.uint8) if cols.votes is not None else None)


def load_csv(path: Path) -> Dataset:
    """Kaggle fer2013.csv (+ FER+ vote columns if present); errors name the file and line."""
    with _open_csv(path) as f:
        reader = csv.reader(f)
        return _csv_rows(path, reader, _csv_columns(path, reader))


MAX_CLASSES = 64  # as many labels as a model's metadata may have (edge.contract)


def _class_name(folder: Path) -> str:
    """The class a folder holds: FER's name for FER's classes and synonyms, else its own name in lower case
    (refused if it could not be a label on the device: 'none', control characters, over 64 characters)."""
    name = canonical(folder.name)
    if name == "none" or not name.isprintable() or len(name) > 64 or name != name.strip() or "," in name:
        raise DataError(f"{folder}: {folder.name!r} cannot be a class name ('none' is reserved; printable, no "
                        f"commas, at most 64 characters)")
    return name


def _class_names(parts: dict[str, Path]) -> tuple[str, ...]:
    """Every class of the folder's splits: FER_LABELS when all are FER classes (labels stay FER indices),
    else the classes found, FER's in FER order, then the others alphabetically."""
    found = {_class_name(c) for d in parts.values() for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")}
    if found <= set(FER_LABELS):
        return FER_LABELS
    if len(found) > MAX_CLASSES:
        raise DataError(f"{len(found)} class folders; a model can have at most {MAX_CLASSES} labels")
    return tuple(n for n in FER_LABELS if n in found) + tuple(sorted(found - set(FER_LABELS)))


def _read_gray(path: Path) -> np.ndarray:
    """One face image, read as `photo` reads images: a regular file of at most IMAGE_MAX_BYTES (a FIFO named
    *.png no longer hangs), its header's size checked before decoding (a PNG bomb no longer fills the RAM)."""
    import cv2

    from edge.imagecheck import ImageRefused, check_image
    from edge.safeio import IMAGE_MAX_BYTES, UnsafeFileError, read_bytes

    try:
        data = np.frombuffer(read_bytes(path, IMAGE_MAX_BYTES), np.uint8)
    except UnsafeFileError as e:  # a FIFO, device or socket, or a file above the cap
        raise DataError(f"{path}: {e}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        check_image(data)
    except ImageRefused as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    try:
        img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise DataError(f"{path}: not a readable image")
    return img


def _split_for(part: str, name: str) -> int:
    if part == "train":
        return 0
    if part == "val":
        return 1
    if name.startswith("PublicTest_"):
        return 1
    return 2  # PrivateTest_ prefix, or test without a prefix


def load_folder(root: Path) -> Dataset:
    """train/<class>/*, test/<class>/* (and optional val/<class>/*); see the module docstring."""
    from edge.preprocess import resize_face

    parts = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        key = {"train": "train", "training": "train", "test": "test", "val": "val", "validation": "val"}.get(d.name.lower())
        if key:
            parts[key] = d
    if not parts:
        raise DataError(f"{root}: not an image folder (expected train/<class>/ and test/<class>/ subfolders)")
    images: list[np.ndarray] = []
    labels: list[int] = []
    usage: list[int] = []
    names: list[str] = []
    size: tuple[int, int] | None = None
    class_names = _class_names(parts)
    for part, d in parts.items():
        for cls_dir in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")):
            cls = class_names.index(_class_name(cls_dir))
            for f in sorted(cls_dir.iterdir()):
                if f.name.startswith(".") or f.suffix.lower() not in IMAGE_EXTS:
                    continue
                img = _read_gray(f)
                if size is None:
                    size = img.shape[:2]
                elif img.shape[:2] != size:
                    img = resize_face(img, size[1], size[0]).copy()
                images.append(img)
                labels.append(cls)
                usage.append(_split_for(part, f.name))
                names.append(f.name)
    if not images:
        raise DataError(f"{root}: no images found under {', '.join(p.name for p in parts.values())}")
    u = np.array(usage, np.int64)
    public = f"the {parts['val'].name}/ folder" if "val" in parts else "the test/ files named PublicTest_*"
    if not (u == 1).any():
        # carve PublicTest from train: stable per file name, independent of folder order
        for i, n in enumerate(names):
            if u[i] == 0 and (zlib.crc32(n.encode()) % 1000) < PUBLIC_FROM_TRAIN * 1000:
                u[i] = 1
        public = f"{PUBLIC_FROM_TRAIN:.0%} of train/ held out (picked by file-name hash; no val/ folder or PublicTest_ files)"
    return Dataset(np.stack(images), np.array(labels, np.int64), u, str(root), public_from=public, names=class_names)


def load_dataset(path: str | Path, labels_from: str = "fer2013") -> Dataset:
    """Pick the loader by what the path is; optionally relabel from FER+ votes."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_dir():
        for name in ("fer2013.npz", "fer2013.csv"):
            if (p / name).is_file() and not any((p / s).is_dir() for s in ("train", "test")):
                return load_dataset(p / name, labels_from)
        ds = load_folder(p)
    elif p.suffix.lower() == ".npz":
        ds = load_npz(p)
    elif p.suffix.lower() == ".csv":
        ds = load_csv(p)
    else:
        raise DataError(f"{p}: unsupported data format (use .npz, fer2013.csv or an image folder)")
    return apply_labels(ds, labels_from)


def describe(ds: Dataset) -> str:
    c = ds.counts()
    return f"{ds.source}: {len(ds.labels)} faces {ds.images.shape[1]}x{ds.images.shape[2]} (" + \
        ", ".join(f"{k} {v}" for k, v in c.items()) + ")"


if __name__ == "__main__":  # quick look: python -m model_export.data PATH
    print(describe(load_dataset(sys.argv[1])))
