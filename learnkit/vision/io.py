"""Finding and decoding images: every image becomes a ``uint8`` RGB tensor ``[3, H, W]``.

Upright colour and grey JPEGs decode with simplejpeg (libjpeg-turbo: the fastest JPEG decoder measured by
``benchmarks/decode.py``); everything else with TorchCodec's image decoders (``torchcodec.decoders.decode_image``:
JPEG, PNG, GIF, WebP, AVIF; libjpeg-turbo and libpng inside the wheel, no FFmpeg needed; the successor of
``torchvision.io.decode_image``, deprecated since torchvision 0.29), which honours the EXIF orientation and
converts any mode (grey, grey+alpha, palette, RGBA, CMYK, 16-bit) to RGB. Formats neither reads (BMP, TIFF...)
fall back to Pillow, and so does everything where they are not installed or TorchCodec does not load against
this torch (`image_decoder` says which). A file that cannot be decoded raises `ImageLoadError`
naming the file and the reason. Files are only ever read.

>>> import tempfile; from PIL import Image
>>> d = Path(tempfile.mkdtemp()); Image.new("L", (6, 4)).save(d / "a.png")
>>> load_image(d / "a.png").shape, [p.name for p in get_image_files(d)]
(torch.Size([3, 4, 6]), ['a.png'])
"""
from __future__ import annotations

import functools
import io
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from ..core.items import get_files
from ..core.paths import expand_path
from ..core.validation import max_image_pixels

__all__ = ["IMAGE_EXTENSIONS", "ImageLoadError", "get_image_files", "load_image", "decode_image_bytes",
           "max_image_pixels", "image_to_tensor", "image_decoder"]

#: File suffixes `get_image_files` picks up (lower case; matching ignores case).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm",
    ".avif", ".heic",
})


class ImageLoadError(OSError):
    """An image file that cannot be read or decoded; the message names the file and what to do."""


def get_image_files(path: str | os.PathLike, recurse: bool = True, folders: Sequence[str] | None = None,
                    extensions: Iterable[str] | None = None) -> list[Path]:
    """Image files under ``path`` (sorted, hidden files and folders skipped), optionally only inside the
    sub-folders ``folders`` (e.g. ``["train", "valid"]``).

    Raises ``FileNotFoundError`` when ``path`` (or one of ``folders``) does not exist.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / "train" / "cat").mkdir(parents=True); (d / "valid").mkdir()
    >>> for f in ["train/cat/1.JPG", "train/notes.txt", "valid/2.png", ".hidden.png"]:
    ...     (d / f).touch()
    >>> [p.relative_to(d).as_posix() for p in get_image_files(d)], len(get_image_files(d, folders=["valid"]))
    (['train/cat/1.JPG', 'valid/2.png'], 1)
    """
    path = expand_path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"image folder {path} does not exist (or is not a folder)")
    return get_files(path, extensions or IMAGE_EXTENSIONS, recurse=recurse, folders=folders)


def _to_rgb_uint8(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 4:  # animated GIF/WebP: the first frame
        x = x[0]
    if x.dtype == torch.uint16:
        x = (x.to(torch.int32) >> 8).to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise TypeError(f"unexpected decoded dtype {x.dtype}")
    if x.shape[0] == 1:
        return x.expand(3, -1, -1).contiguous()
    # the decoders' channels-last layout (HWC in memory) is kept: no copy, and resizing is faster in it
    return x[:3] if x.stride(0) == 1 else x[:3].contiguous()


def _pil_to_tensor(im: Any) -> torch.Tensor:
    """A Pillow image of any mode as ``uint8 [3, H, W]`` RGB (16/32-bit grey scaled, not clipped)."""
    from PIL import Image
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        im = Image.fromarray(a, mode="L")
    elif im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        top = 1.0 if a.max() <= 1.0 else 255.0
        im = Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return torch.from_numpy(np.array(im, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Decode the image at ``path`` to a ``uint8`` RGB tensor ``[3, H, W]``, EXIF orientation applied.

    Raises `ImageLoadError` (an ``OSError``) naming the file for missing, empty, truncated or non-image files.

    >>> import tempfile; from PIL import Image
    >>> f = Path(tempfile.mkdtemp()) / "grey.png"; Image.new("L", (6, 4), 128).save(f)
    >>> img = load_image(f)                                # a greyscale file comes back as RGB
    >>> img.shape, img.dtype, img[:, 0, 0].tolist()
    (torch.Size([3, 4, 6]), torch.uint8, [128, 128, 128])
    """
    path = expand_path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ImageLoadError(f"cannot read image file {path}: {e.strerror or e}") from e
    return _decode(raw, f"image file {path}", "delete or fix it, or pass on_error='skip' to leave such files out")


def decode_image_bytes(data: bytes | bytearray | memoryview | IO[bytes], name: str = "the upload") -> torch.Tensor:
    """Decode an encoded image held in memory — ``bytes`` or a binary file object such as ``io.BytesIO``
    (a web upload) — to a ``uint8`` RGB tensor ``[3, H, W]``, EXIF orientation applied.

    Raises `ImageLoadError` saying what is wrong (empty, not an image, truncated), with ``name`` in the message.

    >>> import io; from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (5, 4)).save(buf, format="PNG")
    >>> decode_image_bytes(buf.getvalue()).shape
    torch.Size([3, 4, 5])
    """
    if hasattr(data, "read"):
        try:
            data.seek(0)
        except (AttributeError, OSError):  # a stream that cannot seek: read from where it stands
            pass
        data = data.read()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{name} must be bytes or a binary file object, got {type(data).__name__}")
    return _decode(bytes(data), name, "upload a JPEG, PNG, GIF, WebP, BMP or TIFF image")


def _probe(raw: bytes, what: str) -> tuple[str | None, str | None, int]:
    """Read the header with Pillow (no pixels): refuse an image whose header announces more pixels than
    `max_image_pixels` before decoding it (a 12000x12000 PNG of a few KB would take 430 MB as RGB), and return
    ``(format, mode, EXIF orientation)`` (``None, None, 1`` where Pillow cannot tell)."""
    limit = max_image_pixels()
    from PIL import Image
    fmt = mode = None
    orientation = 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as im:  # reads the header only
                w, h = im.size
                fmt, mode = im.format, im.mode
                if "exif" in im.info:
                    orientation = im.getexif().get(0x0112, 1)
    except Image.DecompressionBombError:
        if limit is None or limit >= 2 * (Image.MAX_IMAGE_PIXELS or 0):
            return None, None, 1  # a limit raised past Pillow's own: the size is not known here, let the decoders try
        w = h = None  # over twice Pillow's limit: refused below without the size
    except Exception:  # not something Pillow identifies: the decoders below say what is wrong
        return None, None, 1
    if limit is not None and (w is None or w * h > limit):
        size = "over twice Pillow's limit" if w is None else f"{w}x{h} = {w * h:,} pixels"
        raise ImageLoadError(f"{what} is {size}, more than the limit of {limit:,} pixels (a guard against "
                             "decompression bombs); shrink the image, or raise the limit with the environment "
                             "variable LEARNKIT_MAX_IMAGE_PIXELS=<pixels> (or 'none' to turn it off) if you trust it")
    return fmt, mode, orientation


def _check_pixels(raw: bytes, what: str) -> None:
    """`_probe`'s pixel-limit check alone."""
    _probe(raw, what)


@functools.lru_cache(maxsize=None)
def _simplejpeg_decode() -> Any:
    """``simplejpeg.decode_jpeg`` (libjpeg-turbo, the fastest JPEG decoder measured: ``benchmarks/decode.py``), or
    ``None`` where it is not installed."""
    try:
        from simplejpeg import decode_jpeg
    except ImportError:
        return None
    return decode_jpeg


@functools.lru_cache(maxsize=None)
def _torchcodec_decode() -> Any:
    """``torchcodec.decoders.decode_image``, or ``None`` where TorchCodec is missing or fails to load (its
    wheels are built for one torch release each: an older torch gets Pillow, with one warning)."""
    try:
        from torchcodec.decoders import decode_image
    except ImportError as e:
        if getattr(e, "name", None) != "torchcodec":  # installed, but broken against this torch
            warnings.warn(f"TorchCodec does not load here ({e}); learnkit decodes images with Pillow instead "
                          "(slower). Install the torchcodec release built for your torch "
                          f"{torch.__version__.split('+')[0]} to fix it", RuntimeWarning, stacklevel=3)
        return None
    except (OSError, RuntimeError) as e:  # a native library that does not load
        warnings.warn(f"TorchCodec does not load here ({type(e).__name__}: {e}); learnkit decodes images with "
                      "Pillow instead (slower). Install the torchcodec release built for your torch "
                      f"{torch.__version__.split('+')[0]} to fix it", RuntimeWarning, stacklevel=3)
        return None
    return decode_image


def image_decoder() -> str:
    """Which libraries decode images here: ``'simplejpeg+torchcodec'`` (upright RGB and grey JPEGs with simplejpeg,
    the rest of JPEG, PNG, GIF, WebP with TorchCodec), ``'torchcodec'`` or ``'pillow'`` where those are not
    installed or do not load (Pillow always reads BMP, TIFF and the rest).

    >>> image_decoder() in ("simplejpeg+torchcodec", "simplejpeg+pillow", "torchcodec", "pillow")
    True
    """
    rest = "torchcodec" if _torchcodec_decode() is not None else "pillow"
    return f"simplejpeg+{rest}" if _simplejpeg_decode() is not None else rest


def _decode(raw: bytes, what: str, fix: str) -> torch.Tensor:
    """The decoder behind `load_image` and `decode_image_bytes`: simplejpeg, TorchCodec, then Pillow."""
    if not raw:
        raise ImageLoadError(f"{what} is empty (0 bytes); {fix}")
    fmt, mode, orientation = _probe(raw, what)
    jpeg = _simplejpeg_decode() if fmt == "JPEG" and mode in ("RGB", "L") and orientation == 1 else None
    if jpeg is not None:  # the common case: a colour or grey JPEG, upright; CMYK and rotated ones go on below
        try:
            return torch.from_numpy(jpeg(raw, colorspace="RGB")).permute(2, 0, 1)  # HWC in memory, as the others
        except ValueError:  # corrupt or truncated (strict): the decoders below say what is wrong
            pass
    decode, first_msg = _torchcodec_decode(), "TorchCodec is not in use"
    if decode is not None:
        try:  # EXIF orientation applied; CMYK, grey, palette and 16-bit (scaled) come back as uint8 RGB
            return _to_rgb_uint8(decode(raw, mode="RGB"))
        except (RuntimeError, ValueError) as e:  # an unknown format (ValueError) or a broken file (RuntimeError)
            first_msg = "TorchCodec: " + (str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
    # Pillow reads more formats (BMP, TIFF...) and fails clearly on broken files.
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(raw)) as im:
            im.load()
            return _pil_to_tensor(ImageOps.exif_transpose(im))
    except UnidentifiedImageError as e:
        raise ImageLoadError(f"{what} is not an image that TorchCodec or Pillow can read ({len(raw)} bytes "
                             f"starting with {raw[:16]!r}); {fix}") from e
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageLoadError(f"cannot decode {what}: {e} ({first_msg}). It is probably truncated or "
                             f"corrupt; {fix}") from e


def image_to_tensor(item: Any) -> torch.Tensor:
    """A path, encoded image bytes (``bytes``, ``io.BytesIO``: an upload), a Pillow image, a numpy array or a
    tensor as a ``uint8`` RGB tensor ``[3, H, W]``.

    Tensors/arrays may be ``[H, W]``, ``[C, H, W]`` (C = 1, 3 or 4) or ``[H, W, C]`` (numpy), ``uint8``, or
    floating point in ``[0, 1]``.

    >>> image_to_tensor(torch.ones(2, 3)).shape
    torch.Size([3, 2, 3])
    """
    if isinstance(item, (str, os.PathLike)):
        return load_image(item)
    if isinstance(item, (bytes, bytearray, memoryview)) or hasattr(item, "read"):
        return decode_image_bytes(item)
    from PIL import Image, ImageOps
    if isinstance(item, Image.Image):
        return _pil_to_tensor(ImageOps.exif_transpose(item))
    if isinstance(item, np.ndarray):
        arr = item
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4) and arr.shape[0] not in (1, 3, 4):
            arr = arr.transpose(2, 0, 1)
        item = torch.from_numpy(np.ascontiguousarray(arr))
    if not isinstance(item, torch.Tensor):
        raise TypeError(f"cannot make an image out of {type(item).__name__}: pass a file path, encoded image bytes "
                        "(or io.BytesIO), a PIL image, a numpy array or a tensor")
    x = item.detach().cpu()
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3, 4):
        raise ValueError(f"an image tensor must be [H, W] or [C, H, W] with C in (1, 3, 4); got shape {tuple(item.shape)}")
    if x.is_floating_point():
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError("a floating-point image tensor must hold values in [0, 1] (got "
                             f"{float(x.min()):.3g}..{float(x.max()):.3g}); pass uint8 pixels or divide by 255")
        x = (x * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise ValueError(f"an image tensor must be uint8 or float in [0, 1], got {x.dtype}")
    return _to_rgb_uint8(x)



def image_items(items: Any) -> list:
    """``items`` as a list of images for ``test_dl``; a single image (a path, bytes, a file object, a PIL
    image) is refused with a clear message rather than iterated (a bytes object would become integers)."""
    from PIL import Image
    single = isinstance(items, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)) or hasattr(items, "read")
    if single:
        raise TypeError(f"test_dl takes a list of images, got one {type(items).__name__}; wrap it in a list: "
                        "dls.test_dl([image])")
    items = list(items)
    if not items:
        raise ValueError("test_dl got no items")
    return items
