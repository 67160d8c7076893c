"""learnkit.core.tarstream, the shard reader behind ImageDataLoaders.from_shards (issue 27): the same members as
Python's tarfile on ustar, GNU (long names), PAX (webdataset's TarWriter) and compressed tars with directories
and links in them; the same samples as webdataset's tarfile_to_samples; clear errors for truncated or damaged
shards; and the same sample order as webdataset's WebDataset through ImageShardStream."""
from __future__ import annotations

import gzip
import io
import os
import tarfile
import time

import pytest

from learnkit.core.tarstream import TarShardError, _checksum, count_tar_samples, tar_members, tar_samples

FILES = [("00000000.cls", b"3"), ("00000000.jpg", os.urandom(700)), ("00000001.cls", b"0"),
         ("00000001.JPG", os.urandom(512)), ("00000002.txt", b""), ("d/sub.dir/00000003.seg.png", os.urandom(1025)),
         ("naïve-ünïcode.jpg", b"u"), ("__index__", b"meta"), ("__meta__/x.json", b"{}"), ("nodot", b"n"),
         ("dir/.hidden", b"h"), ("x" * 60 + "/" + "y" * 70 + ".jpg", b"long ustar name (prefix + name)"),
         ("g" * 130 + ".png", b"too long for ustar: GNU L or PAX path")]


def _tar(fmt: int, files=FILES, extra: bool = True, mtime: float = 1_700_000_000) -> bytes:
    """A tar of ``files`` in ``fmt``, with a directory, a symlink and a hard link among them if ``extra``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        if extra:
            d = tarfile.TarInfo("somedir"); d.type = tarfile.DIRTYPE; t.addfile(d)
        for i, (name, data) in enumerate(files):
            if fmt == tarfile.USTAR_FORMAT and len(name) > 100 and "/" not in name:
                continue  # ustar cannot hold it
            info = tarfile.TarInfo(name); info.size, info.mtime = len(data), mtime
            t.addfile(info, io.BytesIO(data))
            if extra and i == 2:
                link = tarfile.TarInfo("00000001.lnk"); link.type, link.linkname = tarfile.SYMTYPE, name
                t.addfile(link)
                hard = tarfile.TarInfo("00000001.hard"); hard.type, hard.linkname = tarfile.LNKTYPE, name
                t.addfile(hard)
    return buf.getvalue()


def _tarfile_members(raw: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r|*") as t:
        return [(m.name, t.extractfile(m).read()) for m in t if m.isreg()]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_members_are_tarfiles_in_every_format(fmt):
    raw = _tar(fmt)
    ours = list(tar_members(io.BytesIO(raw), "x.tar"))
    assert ours == _tarfile_members(raw)
    assert "x" * 60 + "/" + "y" * 70 + ".jpg" in dict(ours)  # the ustar prefix joined
    if fmt != tarfile.USTAR_FORMAT:
        assert dict(ours)["g" * 130 + ".png"].startswith(b"too long")  # GNU long name / PAX path
    # a PAX header before every member (a float mtime): what webdataset's TarWriter wrote before learnkit 0.x
    raw = _tar(tarfile.PAX_FORMAT, mtime=1_700_000_000.5)
    assert list(tar_members(io.BytesIO(raw))) == _tarfile_members(raw)


def test_members_of_webdataset_tarwriter_shards_and_compressed_ones(tmp_path):
    wds = pytest.importorskip("webdataset")
    path = tmp_path / "w.tar"
    with wds.TarWriter(str(path)) as sink:  # its default float mtime: a PAX header per member
        for i in range(5):
            sink.write({"__key__": f"s{i}", "jpg": os.urandom(100 * i + 1), "cls": str(i).encode()})
    raw = path.read_bytes()
    ours = list(tar_members(io.BytesIO(raw), str(path)))
    assert ours == _tarfile_members(raw) and len(ours) == 10
    gz = gzip.compress(raw)
    assert list(tar_members(io.BytesIO(gz))) == ours  # gzip: read through tarfile


def test_global_pax_headers_and_a_pax_size_field():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"comment": "commit 0123abc"}) as t:  # as git archive writes
        for name, data in FILES[:4]:
            info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    assert list(tar_members(io.BytesIO(raw))) == _tarfile_members(raw) == FILES[:4]
    # a member whose size is in its PAX header only (how a tar holds members over 8 GiB)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("a.bin"); info.size = 600; info.pax_headers = {"size": "600"}
        t.addfile(info, io.BytesIO(b"z" * 600))
    raw = bytearray(buf.getvalue())
    member = 2 * 512  # after the PAX header and its records: the member's header
    assert raw[member:member + 5] == b"a.bin"
    raw[member + 124:member + 136] = b"00000000000\0"
    raw[member + 148:member + 156] = b"%06o\0 " % _checksum(bytes(raw[member:member + 512]))
    assert list(tar_members(io.BytesIO(bytes(raw)))) == _tarfile_members(bytes(raw)) == [("a.bin", b"z" * 600)]


def test_checksum_is_tarfiles():
    for _ in range(20):
        hdr = os.urandom(512)
        assert _checksum(hdr) == tarfile.calc_chksums(hdr)[0]
    assert _checksum(b"\xff" * 512) == tarfile.calc_chksums(b"\xff" * 512)[0]


def test_truncated_or_damaged_shards_are_errors_naming_the_shard():
    raw = _tar(tarfile.USTAR_FORMAT, extra=False)
    first = 512 + 512  # the first member's header and its one block of data
    for cut in (100, 512 + 1, first + 700, len(raw) // 2 + 3):
        with pytest.raises(TarShardError, match=r"s3://bucket/shard-7\.tar: truncated at byte \d+"):
            list(tar_members(io.BytesIO(raw[:cut]), "s3://bucket/shard-7.tar"))
    assert len(list(tar_members(io.BytesIO(raw[:first])))) == 1  # cut between members: a tar without its end
    damaged = bytearray(raw); damaged[first + 10] ^= 0xFF
    with pytest.raises(TarShardError, match="shard-1.tar: bad tar header checksum at byte 1024"):
        list(tar_members(io.BytesIO(bytes(damaged)), "shard-1.tar"))
    with pytest.raises(TarShardError, match="not a tar"):
        list(tar_members(io.BytesIO(b"<html>404 not found</html>" + bytes(600)), "shard-2.tar"))
    with pytest.raises(TarShardError, match="empty file"):
        list(tar_members(io.BytesIO(b""), "shard-3.tar"))
    with pytest.raises(TarShardError, match="compressed tar"):
        list(tar_members(io.BytesIO(gzip.compress(raw)[:300]), "shard-4.tar.gz"))
    sparse = bytearray(raw); sparse[156:157] = b"S"
    sparse[148:156] = b"%06o\0 " % _checksum(bytes(sparse[:512]))
    with pytest.raises(TarShardError, match="shard-5.tar: a GNU sparse member at byte 0"):
        list(tar_members(io.BytesIO(bytes(sparse)), "shard-5.tar"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"path": "every.jpg"}) as t:
        t.addfile(tarfile.TarInfo("a.jpg"), io.BytesIO(b""))
    with pytest.raises(TarShardError, match="shard-6.tar: a PAX global header at byte 0 sets the path"):
        list(tar_members(io.BytesIO(buf.getvalue()), "shard-6.tar"))


def test_samples_are_webdatasets(tmp_path):
    wds = pytest.importorskip("webdataset")
    urls = []
    for i, fmt in enumerate((tarfile.GNU_FORMAT, tarfile.PAX_FORMAT)):
        p = tmp_path / f"s{i}.tar"
        p.write_bytes(_tar(fmt))
        urls.append(str(p))
    ref = list(wds.tarfile_samples([{"url": u} for u in urls]))
    ours = list(tar_samples([{"url": u, "stream": open(u, "rb"), "local_path": u} for u in urls]))
    assert ours == [{**s, "__local_path__": s["__url__"]} for s in ref] and len(ours) == 2 * 8
    assert [s["__key__"] for s in ours[:3]] == ["00000000", "00000001", "00000002"]
    assert set(ours[1]) == {"__key__", "__url__", "__local_path__", "cls", "jpg"}  # ".JPG": lower-cased
    dup = _tar(tarfile.USTAR_FORMAT, [("k.jpg", b"1"), ("k.jpg", b"2")], extra=False)
    with pytest.raises(ValueError, match=r"d\.tar: 'k\.jpg' repeats the 'jpg' of the sample 'k'"):
        list(tar_samples([{"url": "d.tar", "stream": io.BytesIO(dup)}]))


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_count_is_the_samples_the_stream_yields(tmp_path, fmt):
    """count_tar_samples (headers only) counts what tar_samples yields: dotted folders, metadata files, names
    without an extension, links and directories all as the stream groups them; count_shard_items uses it when
    no counts.json is there."""
    from learnkit.vision.shards import count_shard_items
    p = tmp_path / "s.tar"
    p.write_bytes(_tar(fmt))
    streamed = list(tar_samples([{"url": str(p), "stream": io.BytesIO(p.read_bytes())}]))
    assert count_tar_samples(str(p)) == len(streamed) == (7 if fmt == tarfile.USTAR_FORMAT else 8)
    assert count_shard_items(str(p)) == len(streamed)


def test_image_shard_stream_reads_webdatasets_order(tmp_path):
    wds = pytest.importorskip("webdataset")
    from learnkit.vision.shards import ImageShardStream
    urls = []
    for s in range(3):
        p = tmp_path / f"shard-{s}.tar"
        files = [(f"{s}{i:03d}.{ext}", b"1") for i in range(7) for ext in ("cls", "jpg")]
        with wds.TarWriter(str(p), mtime=int(time.time())) as sink:
            for i in range(0, len(files), 2):
                sink.write({"__key__": files[i][0].split(".")[0], "cls": b"1", "jpg": b"2"})
        urls.append(str(p))
    key = (lambda sample: sample["__key__"])
    for shuffle in (False, True):
        ours = ImageShardStream(urls, key, shuffle=shuffle, shuffle_buffer=5, seed=3)
        seed = ours._epoch_seed() + 1  # the seed its next pass draws
        ref = wds.WebDataset(urls, shardshuffle=100 if shuffle else False, seed=seed, empty_check=False,
                             detshuffle=shuffle)
        ref = ref.shuffle(5, seed=seed) if shuffle else ref
        got, want = list(ours), [s["__key__"] for s in ref]
        assert got == want and len(got) == 21
        assert (got != sorted(got)) == shuffle
    piped = ImageShardStream([f"pipe:cat {u}" for u in urls], key, shuffle=False)  # URLs webdataset opens
    assert list(piped) == sorted(got)


def test_webdatasets_file_cache_is_used_when_wds_cache_is_set(tmp_path, monkeypatch):
    pytest.importorskip("webdataset")
    from learnkit.vision.shards import ImageShardStream
    shard = tmp_path / "shard-0.tar"
    shard.write_bytes(_tar(tarfile.USTAR_FORMAT, FILES[:4], extra=False))
    key = (lambda sample: sample["__key__"])
    monkeypatch.setenv("WDS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="WDS_CACHE=.*cache does not exist"):
        list(ImageShardStream([f"pipe:cat {shard}"], key, shuffle=False))
    (tmp_path / "cache").mkdir()
    assert list(ImageShardStream([f"pipe:cat {shard}"], key, shuffle=False)) == ["00000000", "00000001"]
    assert len(list((tmp_path / "cache").rglob("*"))) == 1  # the shard, cached by webdataset's FileCache
