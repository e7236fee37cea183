"""Training/evaluation data: FER2013 in the formats users have, with the official splits."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import DataError

FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
SPLITS = ("Training", "PublicTest", "PrivateTest")


@dataclass
class Dataset:
    """uint8 images (N, H, W), int labels (N,) in FER_LABELS order, split index per row (SPLITS)."""

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    source: str
    votes: np.ndarray | None = None  # FER+ votes (N, 10) where known

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in SPLITS:
            raise DataError(f"{self.source}: unknown split {name!r}; use one of {', '.join(SPLITS)}")
        mask = self.usage == SPLITS.index(name)
        return self.images[mask], self.labels[mask]


def load_npz(path: Path) -> Dataset:
    """Our compact FER2013 file (see shared/data/fer2013/README.md)."""
    try:
        z = np.load(path, allow_pickle=False)
        images, labels, usage = z["images"], z["labels"].astype(np.int64), z["usage"].astype(np.int64)
        votes = z["ferplus_votes"] if "ferplus_votes" in z.files else None
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a FER2013 .npz file ({e})") from None
    return Dataset(images, labels, usage, str(path), votes)


def load_dataset(path: str | Path) -> Dataset:
    """Pick the loader by what the path is."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.suffix == ".npz":
        return load_npz(p)
    raise DataError(f"{p}: unsupported data format (use .npz, fer2013.csv or an image folder)")
