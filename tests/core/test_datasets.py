"""untar_data against a server started on 127.0.0.1: download, cache, truncation + resume, checksum."""
import hashlib
import io
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from learnkit.datasets import DownloadError, URLs, find_data, untar_data


def _tgz(files: dict[str, bytes], top="ds") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Server:
    """Serves ``self.files`` with Range support; ``truncate_once`` cuts the next response in half."""

    def __init__(self):
        self.files, self.hits, self.ranges, self.truncate_once, self.delay = {}, 0, [], False, 0.0
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                srv.hits += 1
                time.sleep(srv.delay)
                data = srv.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    srv.ranges.append(rng)
                    start = int(rng.split("=")[1].split("-")[0])
                    self.send_response(206)
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if srv.truncate_once:
                    srv.truncate_once = False
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.delenv("LEARNKIT_DATA", raising=False)
    monkeypatch.setenv("LEARNKIT_HOME", str(tmp_path / "home"))
    s = Server()
    yield s
    s.close()


def test_download_extract_and_cache(server, tmp_path):
    server.files["/ds.tgz"] = _tgz({"a.txt": b"hello", "sub/b.txt": b"x" * 5000})
    path = untar_data(server.url + "/ds.tgz")
    assert path == tmp_path / "home" / "data" / "ds" / "ds"
    assert (path / "a.txt").read_bytes() == b"hello" and (path / "sub" / "b.txt").stat().st_size == 5000
    assert untar_data(server.url + "/ds.tgz") == path
    assert server.hits == 1  # the second call used the cache


def test_truncated_download_never_looks_complete_and_resumes(server, tmp_path):
    data = _tgz({"big.bin": bytes(range(256)) * 4000})
    server.files["/ds.tgz"] = data
    server.truncate_once = True
    with pytest.raises(DownloadError, match="truncated|interrupted"):
        untar_data(server.url + "/ds.tgz")
    assert not (tmp_path / "home" / "data" / "ds").exists()
    assert not (tmp_path / "home" / "archives" / "ds.tgz").exists()
    assert (tmp_path / "home" / "archives" / "ds.tgz.part").exists()
    path = untar_data(server.url + "/ds.tgz")
    assert server.ranges and server.ranges[-1].startswith("bytes=")
    assert (path / "big.bin").read_bytes() == bytes(range(256)) * 4000


def test_bad_checksum_is_refused_and_cleaned(server, tmp_path):
    data = _tgz({"a.txt": b"hello"})
    server.files["/ds.tgz"] = data
    with pytest.raises(DownloadError, match="checksum mismatch"):
        untar_data(server.url + "/ds.tgz", sha256="0" * 64)
    assert not any((tmp_path / "home" / "archives").iterdir())
    assert not (tmp_path / "home" / "data" / "ds").exists()
    good = hashlib.sha256(data).hexdigest()
    assert (untar_data(server.url + "/ds.tgz", sha256=good) / "a.txt").exists()


def test_missing_file_and_unreachable_server_are_clear(server):
    with pytest.raises(DownloadError, match="HTTP 404"):
        untar_data(server.url + "/nope.tgz")
    with pytest.raises(DownloadError, match="cannot reach"):
        untar_data("http://127.0.0.1:9/ds.tgz")


def test_zip_with_path_outside_is_refused(server):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../evil.txt", "x")
    server.files["/evil.zip"] = buf.getvalue()
    with pytest.raises(DownloadError, match="outside"):
        untar_data(server.url + "/evil.zip")


def test_learnkit_data_is_used_without_network(server, monkeypatch, tmp_path):
    (tmp_path / "shared" / "pets" / "images").mkdir(parents=True)
    monkeypatch.setenv("LEARNKIT_DATA", str(tmp_path / "shared"))
    assert untar_data(URLs.PETS) == tmp_path / "shared" / "pets"
    with pytest.raises(FileNotFoundError, match="no folder 'imdb'"):
        untar_data(URLs.IMDB)
    assert server.hits == 0


def test_find_data_takes_the_folder_its_root_a_file_or_learnkit_data(server, monkeypatch, tmp_path):
    """What the examples' --data accepts, in one place."""
    ds = tmp_path / "root" / "ml-100k"
    ds.mkdir(parents=True)
    (ds / "u.data").write_text("1\t2\t3\t4\n")
    assert find_data(URLs.ML_100k, tmp_path / "root", marker="u.data") == ds  # a data root
    assert find_data(URLs.ML_100k, ds, marker="u.data") == ds  # the dataset folder itself
    assert find_data(URLs.ML_100k, str(ds / "u.data"), marker="u.data") == ds / "u.data"  # a file, as it is
    with pytest.raises(FileNotFoundError, match=r"no ml-100k data \(with u.item\).*pass --data PATH"):
        find_data(URLs.ML_100k, tmp_path / "root", marker="u.item")
    with pytest.raises(FileNotFoundError, match="no imdb data.*set LEARNKIT_DATA"):
        find_data(URLs.IMDB, download=False)  # neither --data nor LEARNKIT_DATA: never a download
    monkeypatch.setenv("LEARNKIT_DATA", str(tmp_path / "root"))
    assert find_data(URLs.ML_100k, marker="u.data") == ds == find_data("ml-100k", download=False)
    assert server.hits == 0


def test_find_data_downloads_when_allowed(server, tmp_path):
    server.files["/ds.tgz"] = _tgz({"train/a.txt": b"x"})
    assert find_data(server.url + "/ds.tgz", marker="train") == tmp_path / "home" / "data" / "ds" / "ds"
    assert server.hits == 1


def test_local_names():
    assert URLs.local_name(URLs.ML_100k) == "ml-100k"
    assert URLs.local_name("http://x/y/thing.tar.gz") == "thing"


RACE = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
from learnkit.datasets import untar_data
print(untar_data(sys.argv[1]))
"""


def test_ranks_extracting_at_once_do_not_race(server, tmp_path):
    """Two processes (torchrun ranks) ask for the same archive at the same moment: one downloads and
    extracts, the other waits for it; both get the complete folder."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    server.files["/race.tgz"] = _tgz({f"f{i}.txt": bytes([i % 256]) * 4000 for i in range(200)})
    server.delay = 0.5  # both are surely waiting on the download at once
    go = tmp_path / "go"
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", RACE, server.url + "/race.tgz", str(go)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    time.sleep(1.0)  # both have imported and wait for the signal
    go.write_text("go")
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    paths = {o[0].strip() for o in outs}
    assert paths == {str(tmp_path / "home" / "data" / "race" / "ds")}
    assert server.hits == 1  # one download
    assert len(list(Path(paths.pop()).iterdir())) == 200
