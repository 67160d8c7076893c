"""The WT103 download checks the archive's published size and md5 before extracting it (a server on 127.0.0.1)."""
import hashlib
import io
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import learnkit.text.wt103 as wt
from learnkit.datasets import ChecksumError, download_url


def _archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in {"lstm_fwd.pth": b"weights", "itos_wt103.pkl": b"tokens"}.items():
            info = tarfile.TarInfo(f"wt103-fwd/{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def served(monkeypatch, tmp_path):
    """``(files, base_url)``: a server on 127.0.0.1 serving ``files[path]``, with LEARNKIT_HOME in tmp_path."""
    monkeypatch.delenv("LEARNKIT_DATA", raising=False)
    monkeypatch.setenv("LEARNKIT_HOME", str(tmp_path / "home"))
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            data = files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield files, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_the_published_wt103_archive_is_checked_by_size_and_md5():
    size, md5 = wt.WT103_CHECKS[wt.WT103_FWD]
    assert size > 10**8 and len(md5) == 32 and int(md5, 16) >= 0


def test_a_good_archive_passes_and_a_corrupted_one_is_refused_and_not_cached(served, monkeypatch, tmp_path):
    files, base = served
    good = _archive()
    url = base + "/wt103-fwd.tgz"
    monkeypatch.setitem(wt.WT103_CHECKS, url, (len(good), hashlib.md5(good).hexdigest()))
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF  # the same size, another md5
    files["/wt103-fwd.tgz"] = bytes(bad)
    with pytest.raises(ChecksumError) as e:
        wt.wt103_folder(url)
    msg = str(e.value)
    assert "wt103-fwd.tgz" in msg and hashlib.md5(good).hexdigest() in msg and hashlib.md5(bad).hexdigest() in msg
    assert "Run again" in msg
    home = tmp_path / "home"
    assert not (home / "models" / "wt103-fwd").exists()
    assert not [p for p in (home / "archives").iterdir()]  # neither the archive nor a .part is kept
    files["/wt103-fwd.tgz"] = good
    folder = wt.wt103_folder(url)
    assert (folder / "lstm_fwd.pth").read_bytes() == b"weights"
    assert (home / "models" / "wt103-fwd" / ".learnkit-complete").exists()


def test_a_wrong_size_is_refused_before_the_digest(served, tmp_path):
    files, base = served
    files["/a.bin"] = b"hello"
    with pytest.raises(ChecksumError, match=r"a.bin .*expected size 6 bytes, got 5 bytes"):
        download_url(base + "/a.bin", tmp_path / "a.bin", size=6, md5=hashlib.md5(b"hello").hexdigest(),
                     show_progress=False)
    assert not list(tmp_path.glob("a.bin*"))
    ok = download_url(base + "/a.bin", tmp_path / "a.bin", size=5, md5=hashlib.md5(b"hello").hexdigest(),
                      show_progress=False)
    assert ok.read_bytes() == b"hello"


def test_a_kept_archive_that_fails_its_check_is_downloaded_again(served, monkeypatch, tmp_path):
    files, base = served
    good = _archive()
    url = base + "/wt103-fwd.tgz"
    monkeypatch.setitem(wt.WT103_CHECKS, url, (len(good), hashlib.md5(good).hexdigest()))
    kept = tmp_path / "home" / "archives" / "wt103-fwd.tgz"
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"an old, broken archive")
    files["/wt103-fwd.tgz"] = good
    assert (wt.wt103_folder(url) / "itos_wt103.pkl").read_bytes() == b"tokens"
    assert kept.read_bytes() == good
