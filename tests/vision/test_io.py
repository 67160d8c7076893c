"""Decoding images to uint8 RGB tensors, and finding image files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from learnkit.vision import ImageLoadError, get_image_files, image_to_tensor, load_image


@pytest.fixture
def rgb():
    return (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)


def _pil_rgb(path):
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


@pytest.mark.parametrize("mode,ext", [("RGB", ".jpg"), ("L", ".png"), ("LA", ".png"), ("P", ".png"),
                                      ("RGBA", ".png"), ("CMYK", ".jpg"), ("RGB", ".bmp"), ("RGB", ".tif"),
                                      ("P", ".gif"), ("RGB", ".webp")])
def test_any_mode_becomes_uint8_rgb(tmp_path, rgb, mode, ext):
    p = tmp_path / f"x_{mode}{ext}"
    Image.fromarray(rgb).convert(mode).save(p)
    x = load_image(p)
    assert x.dtype == torch.uint8 and x.shape == (3, 20, 30)
    if ext in (".png", ".bmp", ".tif", ".gif"):  # lossless: same pixels as Pillow's RGB conversion
        assert torch.equal(x, _pil_rgb(p))


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.linspace(0, 65535, 40 * 10).reshape(10, 40).astype(np.uint16)
    p = tmp_path / "g16.png"
    Image.fromarray(a).save(p)
    x = load_image(p)
    assert x.dtype == torch.uint8 and x.shape == (3, 10, 40)
    assert x.max() == 255 and x.min() == 0
    assert 100 < float(x.float().mean()) < 155  # a full ramp, not a white image


def test_exif_orientation_is_applied(tmp_path, rgb):
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif)
    assert load_image(p).shape == (3, 30, 20)


def test_animated_gif_gives_first_frame(tmp_path, rgb):
    frames = [Image.fromarray(np.full_like(rgb, v)) for v in (0, 128, 255)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    x = load_image(p)
    assert x.shape == (3, 20, 30) and int(x.max()) < 10


def test_truncated_jpeg_names_the_file(tmp_path, rgb):
    p = tmp_path / "trunc.jpg"
    Image.fromarray(np.repeat(np.repeat(rgb, 8, 0), 8, 1)).save(p, quality=95)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ImageLoadError, match="trunc.jpg") as e:
        load_image(p)
    assert "on_error='skip'" in str(e.value)


def test_empty_file_names_the_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.jpg.*0 bytes"):
        load_image(p)


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("these are not pixels")
    with pytest.raises(ImageLoadError, match=r"notes\.jpg is not an image"):
        load_image(p)


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="nothere.png"):
        load_image(tmp_path / "nothere.png")


def test_image_to_tensor_accepts_pil_numpy_tensors(rgb):
    ref = torch.from_numpy(rgb).permute(2, 0, 1)
    assert torch.equal(image_to_tensor(Image.fromarray(rgb)), ref)
    assert torch.equal(image_to_tensor(rgb), ref)  # HWC numpy
    assert torch.equal(image_to_tensor(ref), ref)
    assert torch.equal(image_to_tensor(ref.float() / 255), ref)
    assert image_to_tensor(torch.zeros(5, 7, dtype=torch.uint8)).shape == (3, 5, 7)
    assert image_to_tensor(torch.zeros(4, 5, 7, dtype=torch.uint8)).shape == (3, 5, 7)  # alpha dropped


@pytest.mark.parametrize("bad,match", [(torch.full((3, 4, 4), 2.0), r"\[0, 1\]"), (torch.zeros(2, 4, 4), "C in"),
                                       (torch.zeros(3, 4, 4, dtype=torch.int32), "uint8"), ([1, 2], "cannot make")])
def test_image_to_tensor_rejects_bad_input(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        image_to_tensor(bad)


def test_get_image_files(tmp_path, rgb):
    for rel in ["a/1.JPG", "a/2.png", "b/c/3.jpeg", "a/notes.txt", ".hidden/4.png", "a/.5.png"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(p, format="PNG") if rel.endswith(("png", "JPG", "jpeg")) else p.write_text("x")
    names = [p.relative_to(tmp_path).as_posix() for p in get_image_files(tmp_path)]
    assert names == ["a/1.JPG", "a/2.png", "b/c/3.jpeg"]
    assert [p.name for p in get_image_files(tmp_path, recurse=False)] == []
    assert [p.name for p in get_image_files(tmp_path, folders=["b"])] == ["3.jpeg"]
    with pytest.raises(FileNotFoundError, match="zzz"):
        get_image_files(tmp_path, folders=["zzz"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_image_files(tmp_path / "missing")


# --- the decoder: TorchCodec, Pillow where it is missing (issue 29) -------------------------------------------
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(tmp_path, rgb, orientation):
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = orientation
    p = tmp_path / f"o{orientation}.png"  # lossless, so the pixels must match exactly
    im.save(p, exif=exif)
    from PIL import ImageOps
    with Image.open(p) as ref:
        expected = torch.from_numpy(np.array(ImageOps.exif_transpose(ref).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(load_image(p), expected)


def _cases(tmp_path, rgb):
    a16 = np.linspace(0, 65535, 40 * 10).reshape(10, 40).astype(np.uint16)
    files = {"g16.png": Image.fromarray(a16), "grey.jpg": Image.fromarray(rgb).convert("L"),
             "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"), "rgba.png": Image.fromarray(rgb).convert("RGBA"),
             "la.png": Image.fromarray(rgb).convert("LA"), "rgb.webp": Image.fromarray(rgb)}
    for name, im in files.items():
        im.save(tmp_path / name)
    return [tmp_path / n for n in files]


def test_torchcodec_and_simplejpeg_decode_when_installed(tmp_path, rgb, monkeypatch):
    pytest.importorskip("torchcodec")
    pytest.importorskip("simplejpeg")
    import learnkit.vision.io as vio
    assert vio.image_decoder() == "simplejpeg+torchcodec"
    p = tmp_path / "x.png"
    Image.fromarray(rgb).save(p)
    assert torch.equal(load_image(p), torch.from_numpy(rgb).permute(2, 0, 1))
    jpegs = []
    for mode in ("RGB", "L"):
        jpegs.append(tmp_path / f"{mode}.jpg")
        Image.fromarray(np.repeat(np.repeat(rgb, 4, 0), 4, 1)).convert(mode).save(jpegs[-1], quality=90)
    fast = [load_image(j) for j in jpegs]  # simplejpeg
    monkeypatch.setattr(vio, "_simplejpeg_decode", lambda: None)
    assert vio.image_decoder() == "torchcodec"
    for j, x in zip(jpegs, fast):  # the same libjpeg-turbo settings: the very same pixels as TorchCodec's
        assert torch.equal(x, load_image(j)), j.name


def test_pillow_fallback_gives_the_same_pixels(tmp_path, rgb, monkeypatch):
    """Where TorchCodec is missing (or built for another torch), Pillow decodes every mode to the same RGB."""
    import learnkit.vision.io as vio
    paths = _cases(tmp_path, rgb)
    first = [load_image(p) for p in paths]
    monkeypatch.setattr(vio, "_torchcodec_decode", lambda: None)
    monkeypatch.setattr(vio, "_simplejpeg_decode", lambda: None)
    assert vio.image_decoder() == "pillow"
    for p, x in zip(paths, first):
        y = load_image(p)
        assert y.shape == x.shape and y.dtype == torch.uint8, p.name
        tol = 2 if p.suffix in (".jpg", ".webp") else 1  # 16-bit: (v >> 8) against round(v / 257)
        assert int((y.int() - x.int()).abs().max()) <= tol, p.name
    with pytest.raises(ImageLoadError, match=r"notes\.png is not an image that TorchCodec or Pillow can read"):
        (tmp_path / "notes.png").write_text("no pixels")
        load_image(tmp_path / "notes.png")


def test_a_torchcodec_that_does_not_load_falls_back_with_one_warning(monkeypatch):
    import builtins

    import learnkit.vision.io as vio
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name.startswith("torchcodec"):
            raise OSError("libtorchcodec_image.so: undefined symbol")  # as with a wheel built for another torch
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", broken)
    vio._torchcodec_decode.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="TorchCodec does not load here.*Pillow instead"):
            assert vio.image_decoder().endswith("pillow")
    finally:
        monkeypatch.undo()
        vio._torchcodec_decode.cache_clear()
