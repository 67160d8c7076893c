"""Issue 19 item 9: a decompression-bomb guard read from the header, before any pixel is decoded."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from learnkit.vision.io import ImageLoadError, decode_image_bytes, load_image


def _png_claiming(w: int, h: int) -> bytes:
    """A small PNG whose header says ``w x h`` (the pixel data is a 1x1 image's: only the header is read)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def test_12000x12000_png_is_refused_naming_file_and_opt_out(tmp_path):
    p = tmp_path / "huge.png"
    p.write_bytes(_png_claiming(12000, 12000))
    with pytest.raises(ImageLoadError, match=r"huge\.png is 12000x12000 = 144,000,000 pixels.*"
                                             r"LEARNKIT_MAX_IMAGE_PIXELS"):
        load_image(p)
    with pytest.raises(ImageLoadError, match="the upload is 12000x12000"):
        decode_image_bytes(p.read_bytes())


def test_limit_is_configurable_and_can_be_turned_off(tmp_path, monkeypatch):
    p = tmp_path / "small.png"
    Image.new("RGB", (6, 4)).save(p)
    monkeypatch.setenv("LEARNKIT_MAX_IMAGE_PIXELS", "10")
    with pytest.raises(ImageLoadError, match=r"small\.png is 6x4 = 24 pixels, more than the limit of 10"):
        load_image(p)
    monkeypatch.setenv("LEARNKIT_MAX_IMAGE_PIXELS", "none")
    assert load_image(p).shape == (3, 4, 6)
    monkeypatch.delenv("LEARNKIT_MAX_IMAGE_PIXELS")
    assert load_image(p).shape == (3, 4, 6)
