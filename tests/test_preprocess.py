"""Preprocessing shared by training and the edge: the LUT must equal the float formula exactly."""
from __future__ import annotations

import numpy as np
import pytest

from edge.preprocess import crop_face, expand_box, quant_lut, resize_face, to_float

RANGES = [(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]


@pytest.mark.parametrize("rng", RANGES)
def test_to_float_endpoints(rng):
    f = to_float(np.array([0, 255], np.uint8), rng)
    assert f.dtype == np.float32
    np.testing.assert_allclose(f, rng, atol=1e-6)


@pytest.mark.parametrize("rng", RANGES)
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_lut_equals_float_formula(rng, dtype):
    """A calibrated (scale, zero point) covering the range: LUT[p] == quantize(to_float(p)) for all 256 p."""
    lo, hi = rng
    info = np.iinfo(dtype)
    scale = (hi - lo) / 255.0
    zp = int(round(info.min - lo / scale))
    lut = quant_lut(rng, scale, zp, dtype)
    assert lut.dtype == dtype and lut.shape == (256,)
    pixels = np.arange(256, dtype=np.uint8)
    exact = to_float(pixels, rng).astype(np.float64) / scale + zp
    want = np.clip(np.round(exact), info.min, info.max).astype(np.int64)
    got = lut.astype(np.int64)
    # Exact wherever the float value is not a rounding tie; at a tie (x.5: every pixel of [-1,1]) either
    # neighbour is half a step away, but two neighbouring pixels must never land on the same value:
    # rounding exact halves to even (np.round on float32, as TFLite's float32 maths would meet them)
    # merges 17 pairs there, which the distinct-count check below catches.
    tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
    np.testing.assert_array_equal(got[~tie], want[~tie])
    assert (np.abs(got[tie] - exact[tie]) <= 0.5 + 1e-3).all()
    assert (np.diff(got) >= 0).all(), "the table must be monotonic"
    if rng != (-1.0, 1.0):
        assert not tie.any()  # [0,1] and [0,255] are exact for every pixel
    else:
        assert tie.all() and len(set(got.tolist())) >= 255, "pixels merged (only the clipped top two may)"
    # and dequantizing gives back the float input within half a step
    np.testing.assert_allclose((lut.astype(np.float64) - zp) * scale, to_float(pixels, rng), atol=scale / 2 + 1e-6)


def test_lut_is_pixel_minus_128_for_standard_int8():
    lut = quant_lut((0.0, 1.0), 1 / 255, -128, np.int8)
    np.testing.assert_array_equal(lut.astype(np.int16), np.arange(256) - 128)


def test_lut_clips_to_dtype():
    lut = quant_lut((0.0, 255.0), 0.5, 0, np.int8)  # range too wide for the scale: saturates
    assert lut.min() == 0 and lut.max() == 127


def test_expand_box_clamps_to_frame():
    assert expand_box((10, 10, 100, 100), 0.1, 320, 240) == (0, 0, 120, 120)
    assert expand_box((250, 180, 60, 60), 0.5, 320, 240) == (220, 150, 100, 90)
    assert expand_box((400, 300, 10, 10), 0.0, 320, 240)[2:] == (0, 0)


def test_crop_is_a_view():
    img = np.arange(240 * 320, dtype=np.uint32).astype(np.uint8).reshape(240, 320)
    face = crop_face(img, (10, 20, 30, 40), 0.0)
    assert face.shape == (40, 30) and np.shares_memory(face, img)


def test_resize_face_into_buffer():
    face = np.full((100, 80), 200, np.uint8)
    out = np.empty((48, 48), np.uint8)
    r = resize_face(face, 48, 48, out=out)
    assert r is out and (out == 200).all()
    small = np.full((20, 20), 9, np.uint8)
    assert (resize_face(small, 48, 48) == 9).all()


def test_resize_face_shrinks_with_inter_area_and_enlarges_linearly():
    """The one resize training and the edge share: area averaging down (no aliasing), bilinear up."""
    import cv2

    rng = np.random.default_rng(3)
    big, small = rng.integers(0, 256, (97, 83), dtype=np.uint8), rng.integers(0, 256, (30, 26), dtype=np.uint8)
    np.testing.assert_array_equal(resize_face(big, 48, 48), cv2.resize(big, (48, 48), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(resize_face(small, 48, 48), cv2.resize(small, (48, 48), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(cv2.resize(big, (48, 48), interpolation=cv2.INTER_LINEAR), resize_face(big, 48, 48))
    same = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    assert resize_face(same, 48, 48) is same  # already the input size: no copy
    out = np.empty((48, 48), np.uint8)
    assert resize_face(same, 48, 48, out=out) is out and np.array_equal(out, same)
    assert resize_face(same[:, :47], 48, 48).shape == (48, 48)  # one side off: resized, not passed through


def test_lut_rounds_to_nearest_for_any_scale():
    """Scales from a real calibration are not 1/255 steps: every entry is the nearest integer level."""
    scale, zp = 0.0123, -7
    lut = quant_lut((0.0, 1.0), scale, zp, np.int8)
    v = to_float(np.arange(256, dtype=np.uint8), (0.0, 1.0)).astype(np.float64) / scale + zp
    assert (np.abs(lut.astype(np.float64) - np.clip(v, -128, 127)) <= 0.5 + 1e-6).all()


def test_crop_clamps_to_a_wide_frames_bottom_edge():
    img = np.zeros((120, 320), np.uint8)
    assert crop_face(img, (280, 90, 40, 40), 0.25).shape == (40, 50)  # rows 80..120, columns 270..320: both clamped
