"""Images as WebDataset tar shards: `write_image_shards` (``learnkit shards make``) and the loaders of
`ImageDataLoaders.from_shards`, on the ``webdataset`` package (``pip install "learnkit[shards]"``).

A shard is a tar file of samples: ``<key>.jpg`` (the encoded image) beside ``<key>.cls`` (the class index as
text), the layout timm's ``wds/`` and OpenCLIP read. ``write_image_shards`` also writes ``vocab.json`` (the
class names, index i = class i), which ``from_shards`` reads when no ``vocab`` is given, and ``counts.json``
(samples per shard), next to the shards.

Training shards are split over the ranks and the loader workers (`learnkit.core.sharding.split_by_rank`, then
``split_by_worker``), their order reshuffled each epoch, the items shuffled in a buffer; the validation shards
are read whole by every rank, in order, by one worker, so ``get_preds`` returns items in shard order. URLs are
anything ``webdataset`` opens: local paths, brace patterns (``"train-{000000..000019}.tar"``), ``pipe:`` commands
and ``http(s)://``. The tar members are read by `learnkit.core.tarstream.tar_samples` (5x less CPU a sample than
webdataset's tarfile-based reader) inside a webdataset pipeline.

>>> import tempfile; from PIL import Image
>>> d = Path(tempfile.mkdtemp())
>>> for lab in ("cat", "dog"):
...     (d / lab).mkdir()
...     for i in range(3): Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(d / lab / f"{i}.jpg")
>>> shards = write_image_shards(d, d / "shards", per_shard=4)
>>> [p.name for p in shards], json.loads((d / "shards" / "vocab.json").read_text())
(['shard-000000.tar', 'shard-000001.tar'], ['cat', 'dog'])
"""
from __future__ import annotations

import copy
import functools
import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..core.data import make_loader
from ..core.iterable import SizedIterable, iterable_loader
from ..core.items import parent_label
from ..core.sharding import split_by_rank, split_by_worker
from ..core.tarstream import count_tar_samples, tar_samples
from .blocks import ImageBlock
from .io import decode_image_bytes, get_image_files

if TYPE_CHECKING:  # pragma: no cover
    from .data import ImageDataLoaders

__all__ = ["write_image_shards", "count_shard_items"]


def _wds():
    try:
        import webdataset
    except ImportError:
        raise ImportError('reading and writing shards needs the webdataset package: pip install "learnkit[shards]"') from None
    return webdataset


def write_image_shards(source: str | Path | Sequence[str | Path], out: str | Path, per_shard: int = 1000,
                       prefix: str = "shard", label_func: Any = parent_label,
                       vocab: Sequence[str] | None = None) -> list[Path]:
    """Write the images under ``source`` (a folder, or a list of image files: one split of a data set),
    labelled by ``label_func`` (the parent folder's name by default), to tar shards of ``per_shard`` samples in
    ``out``, plus ``out/vocab.json`` and ``out/counts.json``. The image bytes are copied as they are (no
    re-encoding), in the order of ``source``. Returns the shard paths.

    >>> import tempfile; from PIL import Image
    >>> d = Path(tempfile.mkdtemp()); (d / "a").mkdir(); Image.new("RGB", (4, 4)).save(d / "a" / "x.png")
    >>> [p.name for p in write_image_shards(d, d / "out", per_shard=10)]
    ['shard-000000.tar']
    >>> [p.name for p in write_image_shards([d / "a" / "x.png"], d / "out2", label_func=lambda f: "cat")]
    ['shard-000000.tar']
    """
    wds = _wds()
    if isinstance(source, (str, Path)):
        files = get_image_files(source)
    else:
        files = [Path(f) for f in source]
        absent = [str(f) for f in files if not f.is_file()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} of the {len(files)} image files given do not exist, e.g. "
                                    f"{absent[0]}")
    if not files:
        raise ValueError(f"no image files {'under ' + str(source) if isinstance(source, (str, Path)) else 'given'}")
    labels = [str(label_func(f)) for f in files]
    vocab = list(vocab) if vocab is not None else sorted(set(labels))
    index = {v: i for i, v in enumerate(vocab)}
    missing = sorted(set(labels) - set(index))
    if missing:
        raise ValueError(f"labels {missing[:5]} are not in the vocab given")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pattern = str(out / f"{prefix}-%06d.tar")
    # a whole-second mtime: webdataset's default (time.time(), a float) costs every member a PAX header, which
    # doubles the headers a reader parses (0.12 -> 0.07 ms a sample in Python's tarfile)
    with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0, mtime=int(time.time())) as sink:
        for i, (f, lab) in enumerate(zip(files, labels)):
            ext = f.suffix.lower().lstrip(".").replace("jpeg", "jpg")
            sink.write({"__key__": f"{i:08d}", ext: f.read_bytes(), "cls": str(index[lab]).encode()})
    (out / "vocab.json").write_text(json.dumps(vocab))
    shards = sorted(out.glob(f"{prefix}-*.tar"))
    sizes = [min(per_shard, len(files) - i * per_shard) for i in range(len(shards))]
    (out / "counts.json").write_text(json.dumps({p.name: n for p, n in zip(shards, sizes)}))
    return shards


def count_shard_items(urls: str | Sequence[str]) -> int | None:
    """Samples in local tar shards (from ``counts.json`` beside them, as `write_image_shards` writes it, else
    from the tar headers), or ``None`` if any URL is not a local file.

    >>> count_shard_items("pipe:cat x.tar") is None
    True
    """
    expanded = _expand(urls)
    if not all(Path(u).is_file() for u in expanded):
        return None
    n = 0
    for u in expanded:
        counts = Path(u).parent / "counts.json"
        known = json.loads(counts.read_text()) if counts.is_file() else {}
        if Path(u).name in known:
            n += int(known[Path(u).name])
            continue
        n += count_tar_samples(u)
    return n


def _expand(urls: str | Sequence[str]) -> list[str]:
    from braceexpand import braceexpand
    urls = [urls] if isinstance(urls, (str, Path)) else list(urls)
    return [u for url in urls for u in braceexpand(str(url))]


def _url_opener() -> Any:
    """webdataset's URL opener, as its ``WebDataset`` picks it: through its file cache when ``$WDS_CACHE`` names
    one (of at most ``$WDS_CACHE_SIZE`` bytes), else streaming (local files, ``pipe:``, ``http(s)://``...)."""
    from webdataset.cache import FileCache, StreamingOpen
    cache_dir, cache_size = os.environ.get("WDS_CACHE"), int(os.environ.get("WDS_CACHE_SIZE", -1))
    if not cache_dir or cache_size == 0:
        return StreamingOpen()
    cache_dir = os.path.expanduser(cache_dir)
    if not os.path.isdir(cache_dir):
        raise ValueError(f"the shard cache directory WDS_CACHE={cache_dir} does not exist: create it, or unset "
                         "WDS_CACHE")
    return FileCache(cache_dir=cache_dir, cache_size=cache_size)


class _Decode:
    """A shard sample → ``(uint8 image [3, H, W] after the item transforms, class index)``, in the worker."""

    def __init__(self, image_key: str, label_key: str, item_tfms: Sequence[Any], training: bool):
        self.image_key, self.label_key, self.item_tfms, self.training = image_key, label_key, list(item_tfms), training
        self.block = ImageBlock()

    def __call__(self, sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
        key = next((k for k in (self.image_key, "jpg", "jpeg", "png", "webp") if k in sample), None)
        if key is None:
            raise KeyError(f"sample {sample.get('__key__')!r} of {sample.get('__url__')!r} has no {self.image_key!r} "
                           f"image (keys: {sorted(k for k in sample if not k.startswith('__'))}); pass image_key=")
        img = decode_image_bytes(sample[key], f"{sample.get('__key__')}.{key} in {sample.get('__url__')}")
        img = self.block.apply_item_tfms(self.item_tfms, img, training=self.training)
        return img, torch.tensor(int(sample[self.label_key]))


class ImageShardStream(IterableDataset):
    """The samples of image shards as ``(uint8 image [3, H, W] after the item transforms, class index)``, read by
    ``webdataset`` (`ImageDataLoaders.from_shards` builds them). ``shuffle``: split the shards over the ranks,
    shuffle their order and the samples (in a buffer of ``shuffle_buffer``), anew each epoch: seeded by ``seed``,
    the epoch `set_epoch` gives (DDP) and the loader's per-epoch worker seed, so a run repeats itself. Else every
    shard in order (validation). `fixed` is the same stream without augmentation and without the shuffle buffer:
    the un-augmented training images the frozen-feature cache computes body features of.

    >>> import tempfile; from PIL import Image
    >>> d = Path(tempfile.mkdtemp()); (d / "a").mkdir(); Image.new("RGB", (4, 4)).save(d / "a" / "x.png")
    >>> stream = ImageShardStream(write_image_shards(d, d / "out"), _Decode("png", "cls", [], False), shuffle=False)
    >>> [(tuple(x.shape), int(y)) for x, y in stream]
    [((3, 4, 4), 0)]
    """

    def __init__(self, urls: Any, decode: "_Decode", shuffle: bool, shuffle_buffer: int = 1000, seed: int = 42):
        self.urls, self.decode, self.shuffle = _expand(urls), decode, shuffle
        self.shuffle_buffer, self.seed, self.epoch, self._passes = shuffle_buffer, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def fixed(self) -> "ImageShardStream":
        """This stream without random item transforms and without the shuffle buffer (the shards still split
        over the ranks and the workers, in a shuffled order: features and targets stay paired)."""
        out = copy.copy(self)
        out.decode = _Decode(self.decode.image_key, self.decode.label_key, self.decode.item_tfms, training=False)
        out.shuffle_buffer = 0
        return out

    def _epoch_seed(self) -> int:
        """A new seed each epoch: in a loader worker, the worker's seed (the loader draws a new one each epoch
        from its seeded generator; workers start again each epoch), in the main process a count of passes."""
        info = get_worker_info()
        if info is None:
            self._passes += 1
        salt = info.seed if info is not None else self._passes
        return (self.seed * 1_000_003 + self.epoch * 7_919 + salt) % 2**62

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # webdataset's own stages for the shard list, the splits, the shuffles and the opening of URLs (local,
        # pipe:, http(s), its WDS_CACHE file cache), in the order its WebDataset composes them; the tar members
        # are read and grouped by `tar_samples` (5x less CPU than webdataset's tarfile-based reader, see there)
        # and decoded by a builtin map (no generator frame per sample)
        wds = _wds()
        seed = self._epoch_seed()
        stages: list[Any] = [wds.SimpleShardList(self.urls)]
        if self.shuffle:
            stages += [split_by_rank, split_by_worker, wds.detshuffle(100, seed=seed)]
        else:
            stages.append(split_by_worker)
        stages += [_url_opener(), tar_samples]
        if self.shuffle and self.shuffle_buffer > 1:
            stages.append(wds.shuffle(self.shuffle_buffer, seed=seed))
        stages.append(functools.partial(map, self.decode))
        return iter(wds.DataPipeline(*stages))


def image_shards_dataloaders(cls: type, train_urls: Any, valid_urls: Any = None, *, image_key: str = "jpg",
                             label_key: str = "cls", vocab: Sequence[Any] | None = None, n_train: int | None = None,
                             n_valid: int | None = None, steps_per_epoch: int | None = None, item_tfms: Any = None,
                             batch_tfms: Any = None, bs: int = 64, num_workers: int | None = None,
                             shuffle_buffer: int = 1000, seed: int = 42,
                             device: str | torch.device | None = None) -> "ImageDataLoaders":
    """`ImageDataLoaders.from_shards` (see there)."""
    from ..core.blockloader import default_num_workers
    from .data import ImageDataLoaders  # noqa: F401 (the return type)
    listify = (lambda t: [] if t is None else (list(t) if isinstance(t, (list, tuple)) else [t]))
    item_tfms, batch_tfms = listify(item_tfms), listify(batch_tfms)
    if vocab is None:
        first = _expand(train_urls)[0]
        vfile = Path(first).parent / "vocab.json"
        if not vfile.is_file():
            raise ValueError(f"no vocab given and no vocab.json beside {first}: pass vocab= (class names, index i = "
                             "the label i in the shards)")
        vocab = json.loads(vfile.read_text())
    nw = default_num_workers() if num_workers is None else num_workers
    if n_train is None and steps_per_epoch is None:
        n_train = count_shard_items(train_urls)
        if n_train is None:
            raise ValueError("the number of training items is unknown for remote shards: pass n_train= (items per "
                             "epoch over all ranks) or steps_per_epoch=")
    train_ds = ImageShardStream(train_urls, _Decode(image_key, label_key, item_tfms, True), True, shuffle_buffer, seed)
    train = iterable_loader(train_ds, bs, n_train, steps_per_epoch, num_workers=nw, device=device)
    valid = None
    if valid_urls is not None:
        n_valid = n_valid if n_valid is not None else count_shard_items(valid_urls)
        if n_valid is None:
            raise ValueError("the number of validation items is unknown for remote shards: pass n_valid=")
        valid_ds = ImageShardStream(valid_urls, _Decode(image_key, label_key, item_tfms, False), False, 0, seed)
        # read whole on every rank (no rank split: SizedIterable's length is per rank only for training), in order
        valid = make_loader(_WholeStream(valid_ds, n_valid), bs * 2, num_workers=min(1, nw), device=device)
    dls = cls(train, valid, device=device, vocab=list(vocab), item_tfms=item_tfms, batch_tfms=batch_tfms, bs=bs)
    dls.shards = {"train": _expand(train_urls), "valid": _expand(valid_urls) if valid_urls is not None else []}
    return dls


class _WholeStream(SizedIterable):
    """A validation stream: every rank reads all of it, so its length is the whole set's."""

    def __len__(self) -> int:
        return self.n_items

