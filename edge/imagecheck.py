"""Image size from the file header, checked before OpenCV decodes anything (decompression bombs).

A 1 MB PNG can declare 12000x12000 16-bit RGBA pixels: OpenCV allocates the whole bitmap
(about 1.1 GB, several times that while converting) before noticing anything. A Pi Zero 2 W has
512 MB, so the width, height, channels and sample size are read from the header first, and an
image above MAX_IMAGE_PIXELS or MAX_DECODED_BYTES is refused. Formats whose header we cannot
read are refused too: OpenCV would otherwise pick a decoder by content, whatever the name says.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from edge.frames import MAX_SIDE  # the longest side any frame may have: a 1000000x16 strip is refused too

MAX_IMAGE_PIXELS = 16_000_000
"""Largest image accepted (width x height): 4900x3265, above any Pi camera (HQ: 12.3 MP) and 12 MP phones."""
MAX_DECODED_BYTES = 64_000_000
"""Largest decoded bitmap: width x height x channels x bytes per sample (8-bit RGBA: 16 MP, 16-bit RGBA: 8 MP)."""
FORMATS = "JPEG, PNG, BMP, WebP, TIFF or PNM"


class ImageRefused(ValueError):
    """The header is unreadable, the format unknown, or the image too large to decode."""


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    channels: int  # as decoded with IMREAD_UNCHANGED (an upper bound where the header is vague)
    sample_bytes: int  # 1, or 2 for 16-bit (4 for 32-bit TIFF/PNM)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        return self.pixels * self.channels * self.sample_bytes


def check_image(data: bytes | memoryview, max_pixels: int = MAX_IMAGE_PIXELS,
                max_bytes: int = MAX_DECODED_BYTES) -> ImageHeader:
    """The header of an image small enough to decode; ImageRefused (one line, no path) otherwise."""
    head = bytes(data[:65536]) if not isinstance(data, bytes) else data
    try:
        h = read_header(head)
    except (struct.error, IndexError, ValueError):
        h = None
    if h is None:
        raise ImageRefused(f"not an image this program reads ({FORMATS}), or its header is damaged")
    if h.width <= 0 or h.height <= 0:
        raise ImageRefused(f"{h.format} header declares {h.width}x{h.height} pixels")
    if max(h.width, h.height) > MAX_SIDE:
        # the same words as edge.frames.as_gray, which refused these after decoding before
        raise ImageRefused(f"image is too large ({h.width}x{h.height}; at most {MAX_SIDE} px a side; scale it down first)")
    if h.pixels > max_pixels or h.decoded_bytes > max_bytes:
        raise ImageRefused(f"{h.format} of {h.width}x{h.height} pixels ({h.channels} channel(s), "
                           f"{8 * h.sample_bytes}-bit) is larger than the {max_pixels / 1e6:g} megapixel / "
                           f"{max_bytes / 1e6:g} MB limit; scale it down first")
    return h


def read_header(b: bytes) -> ImageHeader | None:
    """Dimensions from the first bytes of a file, or None for a format not recognised here."""
    if b.startswith(b"\x89PNG\r\n\x1a\n") and b[12:16] == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", b[16:26])
        ch = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}.get(ctype)
        return ImageHeader("PNG", w, h, ch, 2 if depth == 16 else 1) if ch else None
    if b.startswith(b"\xff\xd8\xff"):
        return _jpeg(b)
    if b.startswith(b"BM") and len(b) >= 30:
        dib = struct.unpack("<I", b[14:18])[0]
        if dib == 12:
            w, h = struct.unpack("<HH", b[18:22])
            bpp = struct.unpack("<H", b[24:26])[0]
        else:
            w, h = struct.unpack("<ii", b[18:26])
            bpp = struct.unpack("<H", b[28:30])[0]
        return ImageHeader("BMP", w, abs(h), 4 if bpp == 32 else 3, 1)
    if b.startswith(b"RIFF") and b[8:12] == b"WEBP":
        return _webp(b)
    if b[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(b)
    if re.match(rb"P[1-6]\s", b[:3]):
        return _pnm(b)
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(b: bytes) -> ImageHeader | None:
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD8:
            i += 2
            continue
        if marker in _SOF:
            h, w = struct.unpack(">HH", b[i + 5:i + 9])
            ch = b[i + 9]
            return ImageHeader("JPEG", w, h, 3 if ch >= 3 else 1, 1)
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        i += 2 + struct.unpack(">H", b[i + 2:i + 4])[0]
    return None  # no frame header in the first 64 KB: refuse rather than decode blind


def _webp(b: bytes) -> ImageHeader | None:
    chunk = b[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", b[26:30])
        return ImageHeader("WebP", w & 0x3FFF, h & 0x3FFF, 4, 1)
    if chunk == b"VP8L":
        bits = struct.unpack("<I", b[21:25])[0]
        return ImageHeader("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 4, 1)
    if chunk == b"VP8X":
        w = int.from_bytes(b[24:27], "little") + 1
        h = int.from_bytes(b[27:30], "little") + 1
        return ImageHeader("WebP", w, h, 4, 1)
    return None


def _tiff(b: bytes) -> ImageHeader | None:
    e = "<" if b[:2] == b"II" else ">"
    off = struct.unpack(e + "I", b[4:8])[0]
    n = struct.unpack(e + "H", b[off:off + 2])[0]
    tags: dict[int, int] = {}
    for k in range(n):
        tag, typ, count, raw = struct.unpack(e + "HHI4s", b[off + 2 + 12 * k: off + 14 + 12 * k])
        if typ == 3:  # SHORT: the first value is inline
            tags[tag] = struct.unpack(e + "H", raw[:2])[0]
        elif typ == 4:  # LONG
            tags[tag] = struct.unpack(e + "I", raw)[0]
        else:
            tags[tag] = 0
        if tag == 258 and count > 1:  # BitsPerSample per channel: assume the widest OpenCV keeps
            tags[tag] = 16
    if 256 not in tags or 257 not in tags:
        return None
    bits = tags.get(258, 8) or 16
    return ImageHeader("TIFF", tags[256], tags[257], max(1, min(tags.get(277, 1), 4)), max(1, min(bits, 64) // 8))


def _pnm(b: bytes) -> ImageHeader | None:
    text = re.sub(rb"#[^\n]*", b" ", b[:1024])
    tokens = text.split()
    kind = tokens[0][1:2]
    need = 3 if kind in (b"1", b"4") else 4
    if len(tokens) < need:
        return None
    w, h = int(tokens[1]), int(tokens[2])
    maxval = 1 if need == 3 else int(tokens[3])
    return ImageHeader("PNM", w, h, 3 if kind in (b"3", b"6") else 1, 2 if maxval > 255 else 1)


def load_checked(path, flags: int, max_file_bytes: int | None = None):
    """Read a regular file (capped), check its header, then cv2.imdecode; None when OpenCV cannot decode it.

    OSError (FIFO, device, too large, unreadable) and ImageRefused (unknown format, too many
    pixels) propagate with a one-line message.
    """
    import cv2
    import numpy as np

    from edge.safeio import IMAGE_MAX_BYTES, read_bytes

    data = np.frombuffer(read_bytes(path, max_file_bytes or IMAGE_MAX_BYTES), dtype=np.uint8)
    if data.size == 0:
        raise ImageRefused("empty file")
    check_image(data)
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error:
        return None
    return None if img is None or img.size == 0 else img
