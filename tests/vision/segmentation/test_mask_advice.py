"""Issue 19 item 7: a 0/255 binary mask gets the mapping that fits (not void_code=); a BOM in codes.txt is stripped."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from learnkit.vision.segmentation.masks import load_mask, read_codes


def test_binary_0_255_mask_advises_dividing_by_255_not_void_code(tmp_path):
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8), mode="L").save(tmp_path / "m.png")
    with pytest.raises(ValueError, match=r"m\.png.*0/255 binary mask.*codes=\['background', 'object'\].*divided by "
                                         r"255.*Do not pass void_code=255") as e:
        load_mask(tmp_path / "m.png", n_codes=2)
    assert "or pass void_code=" not in str(e.value)


def test_bom_in_codes_txt_is_stripped(tmp_path):
    p = tmp_path / "codes.txt"
    p.write_bytes("\ufeffSky\nRoad\n".encode("utf-8"))
    assert read_codes(p) == ["Sky", "Road"]
