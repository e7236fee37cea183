"""`emotion-export framing`: real FER2013 faces (tests/fixtures/fer_sample.npz) through real Haar and LiteRT."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge.classify import EmotionClassifier
from edge.config import DetectConfig
from edge.detect import FaceDetector
from model_export.cli import main
from model_export.framing import measure, paste

from .conftest import BUNDLED_MODEL, FIXTURES


@pytest.fixture
def fer_sample_npz(tmp_path):
    """The 140-face fixture as a FER2013 .npz (all PrivateTest), as the data loader reads it."""
    z = np.load(FIXTURES / "fer_sample.npz")
    out = tmp_path / "fer.npz"
    np.savez(out, images=z["images"], labels=z["labels"], usage=np.full(len(z["labels"]), 2, np.int64))
    return out, z["images"], z["labels"]


def test_paste_centres_the_upscaled_face_on_a_plain_frame():
    face = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)
    frame = paste(face, 4)
    assert frame.shape == (320, 320) and frame[0, 0] == 110 and frame[-1, -1] == 110
    assert frame[64:256, 64:256].mean() == pytest.approx(face.mean(), abs=2)


def test_accuracy_is_counted_on_the_faces_haar_finds(fer_sample_npz):
    _, images, labels = fer_sample_npz
    res = measure(images[:40], labels[:40], str(BUNDLED_MODEL), margins=[0.0, 0.15], multi_crop=False)
    det = FaceDetector(DetectConfig())
    want_found = want_right = 0
    with EmotionClassifier(BUNDLED_MODEL, crop_margin=0.15) as clf:
        for img, t in zip(images[:40], labels[:40]):
            frame = paste(img, 4)
            boxes = det.detect(frame)
            if boxes:
                want_found += 1
                want_right += clf.classify(frame, boxes[0]).top == clf.labels[int(t)]
    assert res.n == 40 and res.found == want_found >= 20
    assert [r.margin for r in res.rows] == [0.0, 0.15]
    assert res.rows[1].accuracy == pytest.approx(want_right / want_found)
    assert res.rows[0].accuracy != res.rows[1].accuracy  # the margin really changes the crop


def test_cli_text_json_and_refusals(fer_sample_npz, capsys):
    npz, _, _ = fer_sample_npz
    assert main(["framing", "--data", str(npz), "--limit", "30", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    own = EmotionClassifier(BUNDLED_MODEL).info.input.crop_margin
    assert r["n"] == 30 and r["multi_crop"] is True and [row["margin"] for row in r["rows"]] == [own]
    assert 0 < r["found"] <= 30 and 0 <= r["dataset_crop_accuracy"] <= 1
    assert main(["framing", "--data", str(npz), "--limit", "30", "--single-crop", "--crop-margin", "0,0.1"]) == 0
    out = capsys.readouterr().out
    assert "Haar found" in out and "crop margin 0 (one crop)" in out and "crop margin 0.1 (one crop)" in out
    for bad, msg in ((["--crop-margin", "2"], "at most 1"), (["--crop-margin", "0,0"], "repeated"),
                     (["--scale", "1"], "between 2 and 10")):
        with pytest.raises(SystemExit) as e:
            main(["framing", "--data", str(npz), *bad])
        assert e.value.code == 2 and msg in capsys.readouterr().err
