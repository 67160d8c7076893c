"""Codes, void codes and mask decoding: every bad mask gets an error naming its file."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from learnkit.vision.segmentation.masks import (check_mask_values, load_mask, mask_size, read_codes,
                                                resolve_void_code)


def test_read_codes_from_file_and_list(tmp_path):
    p = tmp_path / "codes.txt"
    p.write_text("Sky\nRoad\n  Void  \n\n")
    assert read_codes(p) == ["Sky", "Road", "Void"]
    assert read_codes(str(p)) == ["Sky", "Road", "Void"]
    assert read_codes(np.array(["a", "b"]).tolist()) == ["a", "b"]


@pytest.mark.parametrize("codes, match", [([], "empty"), (["a", "a"], "distinct"), (None, "required")])
def test_read_codes_rejects_bad_lists(codes, match):
    with pytest.raises(ValueError, match=match):
        read_codes(codes)


def test_read_codes_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_codes(tmp_path / "nope.txt")
    (tmp_path / "gap.txt").write_text("a\n\nb\n")
    with pytest.raises(ValueError, match="line 2"):
        read_codes(tmp_path / "gap.txt")


def test_resolve_void_code():
    codes = ["Sky", "Road", "Void"]
    assert resolve_void_code("Void", codes) == 2
    assert resolve_void_code(1, codes) == 1
    assert resolve_void_code(255, codes) == 255  # an ignore value outside the codes is allowed
    assert resolve_void_code(None, codes) is None
    with pytest.raises(ValueError, match="'Unlabelled' is not one of the codes"):
        resolve_void_code("Unlabelled", codes)
    with pytest.raises(ValueError, match="0..255"):
        resolve_void_code(300, codes)


def test_load_mask_modes(tmp_path):
    arr = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    Image.fromarray(arr, mode="L").save(tmp_path / "l.png")
    pal = Image.fromarray(arr, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    pal.save(tmp_path / "p.png")
    Image.fromarray(arr.astype(bool)).save(tmp_path / "b.png")  # mode "1"
    for name in ("l.png", "p.png"):
        m = load_mask(tmp_path / name, n_codes=3)
        assert m.dtype == torch.uint8 and m.tolist() == arr.tolist(), name
    assert load_mask(tmp_path / "b.png", n_codes=2).tolist() == [[0, 1], [1, 1]]
    assert mask_size(tmp_path / "l.png") == (2, 2)


def test_colour_mask_is_rejected_with_advice(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png is a mode-RGB image.*class indices"):
        load_mask(tmp_path / "rgb.png", n_codes=3)


def test_value_outside_codes_names_file_and_value(tmp_path):
    Image.fromarray(np.array([[0, 7]], np.uint8), mode="L").save(tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"m\.png holds value\(s\) \[7\] outside the codes \(3 codes"):
        load_mask(tmp_path / "m.png", n_codes=3)
    assert load_mask(tmp_path / "m.png", n_codes=3, void_code=7).tolist() == [[0, 7]]


def test_mask_size_mismatch_names_both_files(tmp_path):
    Image.fromarray(np.zeros((4, 6), np.uint8), mode="L").save(tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"m\.png is 6x4 .* its image img\.jpg is 8x4"):
        load_mask(tmp_path / "m.png", n_codes=2, image_hw=(4, 8), image_path="img.jpg")


def test_missing_and_unreadable_mask(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.png"):
        load_mask(tmp_path / "absent.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="junk.png"):
        load_mask(tmp_path / "junk.png")


def test_check_mask_values_allows_void():
    m = torch.tensor([[0, 1], [255, 1]], dtype=torch.uint8)
    check_mask_values(m, 2, 255)
    with pytest.raises(ValueError, match=r"\[255\]"):
        check_mask_values(m, 2, None, "x.png")
