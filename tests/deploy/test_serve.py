"""``learnkit serve`` against a real server on 127.0.0.1: the answers of `learn.predict` (batched), the JSON tasks,
and every limit of the robustness issue (body size however declared, header size, slow clients, load)."""
from __future__ import annotations

import concurrent.futures as cf
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("multipart")  # python-multipart, Starlette's form parser


REPO = Path(__file__).resolve().parents[2]
MAX_MB = 1


def start_server(model: Path, *flags: str, cwd: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LEARNKIT_PROGRESS": "0", "PYTHONUNBUFFERED": "1"}
    log = open(cwd / "server.log", "w")  # a file, not a pipe: a full pipe would block the server's logging
    proc = subprocess.Popen([sys.executable, "-m", "learnkit", "serve", str(model), "--port", "0", *flags],
                            stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=cwd)
    log.close()
    line = proc.stdout.readline()  # "serving MODEL on http://127.0.0.1:PORT"
    if not line.startswith("serving"):
        proc.kill()
        raise AssertionError((line, (cwd / "server.log").read_text()))
    return proc, line.split()[-1]


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the server did not stop within 30 s of SIGTERM")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A resnet10t (random init: the answers need only be the same as `learn.predict`'s) for red (cat) / blue
    (dog) images, served with a 1 MB limit, short timeouts and batching: ``(url, learner, image_dir)``."""
    from learnkit.vision import ImageDataLoaders, Resize, get_image_files, vision_learner
    root = tmp_path_factory.mktemp("serve")
    _make_images(root / "imgs", n=6)
    dls = ImageDataLoaders.from_name_re(root / "imgs", get_image_files(root / "imgs"), r"^(\w+)_\d+",
                                        item_tfms=Resize(32), bs=4, device="cpu")
    learn = vision_learner(dls, "resnet10t", pretrained=False, progress=False, path=root, lin_ftrs=[8])
    model = learn.export(root / "model.safetensors")
    proc, url = start_server(model, "--max-mb", str(MAX_MB), "--max-batch", "8", "--max-wait-ms", "20",
                             "--header-timeout", "1", "--body-timeout", "2", "--max-header-kb", "8", cwd=root)
    try:
        yield url, learn, root / "imgs"
    finally:
        stop(proc)


# --- helpers ---------------------------------------------------------------------------------------------
def _make_images(root: Path, n: int) -> None:
    """Red ``cat_<i>.png`` and blue ``dog_<i>.png``, 32 px, with a little noise (as tests/deploy/conftest.py)."""
    import numpy as np
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        for label, color in (("cat", (220, 40, 40)), ("dog", (40, 40, 220))):
            a = np.clip(np.array(color)[None, None] + rng.integers(-20, 21, (32, 32, 3)), 0, 255)
            Image.fromarray(a.astype(np.uint8)).save(root / f"{label}_{i}.png")


def post(url: str, body: bytes, ctype: str = "image/png", path: str = "/predict") -> tuple[int, dict]:
    req = urllib.request.Request(url + path, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}") if "json" in (e.headers.get("content-type") or "") else {}


def get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=30) as res:
        return json.loads(res.read())


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def status_of(sock: socket.socket, timeout: float = 10) -> tuple[int, bytes]:
    """The status code and the whole response (read until the server closes or the body is complete)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split()[1]), data


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def head(url: str, extra: str, method: str = "POST") -> bytes:
    return (f"{method} /predict HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\nContent-Type: image/png\r\n"
            f"{extra}\r\n").encode()


def png(color=(220, 40, 40), size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


# --- answers ---------------------------------------------------------------------------------------------
def test_concurrent_requests_get_learn_predict_answers_in_batches(served):
    url, learn, imgs = served
    files = sorted(imgs.glob("*.png"))
    expected = {f.name: learn.predict(f) for f in files}
    with cf.ThreadPoolExecutor(len(files)) as pool:
        answers = dict(zip([f.name for f in files], pool.map(lambda f: post(url, f.read_bytes()), files)))
    for name, (status, answer) in answers.items():
        label, idx, probs = expected[name]
        assert status == 200 and answer["prediction"] == label, (name, answer)
        assert answer["probability"] == pytest.approx(float(probs[idx]), abs=1e-4)
        assert answer["top"][0]["label"] == label and len(answer["top"]) == 2
    stats = get(url, "/health")
    assert stats["status"] == "ok" and stats["batching"]["largest_batch"] > 1, stats  # concurrent -> batched
    info = get(url, "/info")
    assert info["task"] == "image" and info["classes"] == ["cat", "dog"] and info["server"]["max_batch"] == 8
    # multipart, as curl -F sends it
    body, ctype = _multipart(files[0].read_bytes())
    status, answer = post(url, body, ctype)
    assert status == 200 and answer["prediction"] == expected[files[0].name][0]


def _multipart(data: bytes, name: str = "file") -> tuple[bytes, str]:
    b = "XyZ123"
    body = (f'--{b}\r\nContent-Disposition: form-data; name="{name}"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def test_bad_requests_get_400_413_415(served):
    url, _, imgs = served
    assert post(url, b"%PDF-1.7 not an image")[0] == 400
    status, answer = post(url, b'{"text": "hi"}', "application/json")
    assert status == 415 and "takes an image" in answer["error"]
    with connect(url) as s:  # the server answers before the client has sent it all, and closes
        try:
            s.sendall(head(url, f"Content-Length: {MAX_MB * 2**20 + 1}\r\n") + b"x" * (MAX_MB * 2**20 + 1))
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, data = status_of(s)
    assert status == 413 and b"the limit is 1 MB" in data
    status, answer = post(url, b"--XyZ123--\r\n", "multipart/form-data; boundary=XyZ123")
    assert status == 400 and "no file field" in answer["error"]


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " 12x"])
def test_malformed_content_length_gets_400(served, length):
    url = served[0]
    with connect(url) as s:
        s.sendall(head(url, f"Content-Length: {length}\r\n") + b"x" * 2000)
        status, _ = status_of(s)
    assert status == 400


def test_declared_length_over_the_limit_gets_413_without_sending_the_body(served):
    url = served[0]
    with connect(url) as s:
        s.sendall(head(url, f"Content-Length: {50 * 2**20}\r\n"))  # and no body at all
        status, data = status_of(s, timeout=5)
    assert status == 413 and b"the limit is 1 MB" in data


def test_chunked_uploads_are_counted_as_they_stream(served):
    url, learn, imgs = served
    # under the limit: the image arrives in chunks and is predicted
    data = (imgs / "cat_0.png").read_bytes()
    expected = learn.predict(imgs / "cat_0.png")[0]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (data[:100], data[100:])) + b"0\r\n\r\n"
    with connect(url) as s:
        s.sendall(head(url, "Transfer-Encoding: chunked\r\n") + chunks)
        status, body = status_of(s)
    assert status == 200 and json.loads(body.split(b"\r\n\r\n", 1)[1])["prediction"] == expected
    # over the limit: 413 while the client is still sending; the server read at most the limit
    sent, piece = 0, b"y" * 65536
    with connect(url) as s:
        s.sendall(head(url, "Transfer-Encoding: chunked\r\n"))
        try:
            while sent < 8 * MAX_MB * 2**20:
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _ = status_of(s)
    assert status == 413 and sent < 8 * MAX_MB * 2**20, sent  # refused before the 8 MB were sent
    assert get(url, "/health")["limits"]["largest_body_read"] <= MAX_MB * 2**20


def test_headers_over_the_limit_get_400(served):
    url = served[0]
    with connect(url) as s:
        s.sendall(head(url, f"X-Big: {'a' * 20000}\r\nContent-Length: 0\r\n"))
        status, _ = status_of(s)
    assert status in (400, 431)


def test_slow_clients_time_out(served):
    url = served[0]
    with connect(url) as s:  # headers that never finish: the connection is closed after --header-timeout
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        s.settimeout(10)
        assert s.recv(1024) == b"" and time.monotonic() - t0 < 5
    with connect(url) as s:  # a body that never finishes: 408 after --body-timeout
        s.sendall(head(url, "Content-Length: 5000\r\n") + b"z" * 100)
        status, data = status_of(s)
    assert status == 408 and b"did not arrive within 2 s" in data


def test_a_normal_request_answers_under_load(served):
    """20 slow clients and 10 concurrent 900 kB uploads, and a normal request still answers within 2 s."""
    url, learn, imgs = served
    slow = []
    for _ in range(20):
        s = connect(url)
        s.sendall(head(url, "Content-Length: 100000\r\n") + b"z" * 10)  # then nothing
        slow.append(s)
    big = Image.frombytes("RGB", (560, 560), os.urandom(560 * 560 * 3))  # noise: a PNG of ~900 kB
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    assert 0.5 * 2**20 < len(buf.getvalue()) < MAX_MB * 2**20
    stop_uploads = threading.Event()

    def upload() -> int:
        n = 0
        while not stop_uploads.is_set():
            assert post(url, buf.getvalue())[0] == 200
            n += 1
        return n

    try:
        with cf.ThreadPoolExecutor(10) as pool:
            uploads = [pool.submit(upload) for _ in range(10)]
            time.sleep(0.5)
            times = []
            for f in sorted(imgs.glob("dog_*.png"))[:3]:
                t0 = time.monotonic()
                status, answer = post(url, f.read_bytes())
                times.append(time.monotonic() - t0)
                assert status == 200 and answer["prediction"] == learn.predict(f)[0]
            stop_uploads.set()
            done = [u.result() for u in uploads]
        assert max(times) < 2.0, times
        assert sum(done) >= 10, done
    finally:
        for s in slow:
            s.close()


# --- the JSON tasks, on an in-process server -------------------------------------------------------------
class ThreadServer:
    """uvicorn in a thread of this process, on a free port of 127.0.0.1."""

    def __init__(self, app):
        import uvicorn
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", ws="none"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def test_tabular_and_text_models_take_json():
    import pandas as pd

    from learnkit.serve import Predictor, ServeConfig, create_app
    from learnkit.tabular import TabularDataLoaders, tabular_learner
    df = pd.DataFrame({"job": ["a", "b"] * 20, "age": list(range(40)), "y": ["no", "yes"] * 20})
    dls = TabularDataLoaders.from_df(df, cat_names="job", cont_names="age", y_names="y", bs=8, device="cpu")
    learn = tabular_learner(dls, layers=[8], progress=False)
    learn.fit(1)
    rows = df.drop(columns="y").head(4).to_dict("records")
    with ThreadServer(create_app(Predictor(learn), ServeConfig(max_batch=4))) as url:
        status, answer = post(url, json.dumps({"rows": rows}).encode(), "application/json")
        assert status == 200 and [a["prediction"] for a in answer["predictions"]] == \
            [learn.predict(r)[0]["y"] for r in rows]
        status, one = post(url, json.dumps({"row": rows[1]}).encode(), "application/json")
        assert status == 200 and one == answer["predictions"][1]
        status, err = post(url, json.dumps({"row": {"job": "a"}}).encode(), "application/json")
        assert status == 400 and "age" in err["error"]
        assert post(url, b"not json", "application/json")[0] == 400
        assert post(url, png(), "image/png")[0] == 415
        assert post(url, json.dumps({"rows": "a"}).encode(), "application/json")[0] == 400

    from learnkit.text import TextDataLoaders, text_classifier_learner
    texts = pd.DataFrame({"text": ["good great movie", "bad awful plot"] * 6, "label": ["pos", "neg"] * 6})
    tdls = TextDataLoaders.from_df(texts, tok="words", min_freq=1, bs=4, device="cpu")
    tlearn = text_classifier_learner(tdls, "lstm", config={"emb_dim": 8, "hidden": 8, "head_hidden": 8},
                                     progress=False)
    with ThreadServer(create_app(Predictor(tlearn))) as url:
        status, answer = post(url, json.dumps({"texts": ["a good movie", "an awful plot"]}).encode(),
                              "application/json")
        assert status == 200 and [a["prediction"] for a in answer["predictions"]] == \
            [tlearn.predict(t)[0] for t in ("a good movie", "an awful plot")]
        status, plain = post(url, b"a good movie", "text/plain")
        assert status == 200 and plain == answer["predictions"][0]
        with urllib.request.urlopen(url + "/", timeout=30) as res:
            assert "<textarea" in res.read().decode()


def test_requests_past_max_inflight_get_503():
    import pandas as pd

    from learnkit.serve import Predictor, ServeConfig, create_app
    from learnkit.tabular import TabularDataLoaders, tabular_learner
    df = pd.DataFrame({"x": range(20), "y": ["a", "b"] * 10})
    dls = TabularDataLoaders.from_df(df, cont_names="x", y_names="y", bs=4, device="cpu")
    app = create_app(Predictor(tabular_learner(dls, layers=[4], progress=False)),
                     ServeConfig(max_inflight=1, body_timeout=5))
    with ThreadServer(app) as url:
        with connect(url) as slow:  # holds the one slot: its body never finishes
            slow.sendall(head(url, "Content-Length: 1000\r\n").replace(b"image/png", b"application/json") + b"{")
            time.sleep(0.3)
            status, answer = post(url, b'{"row": {"x": 3}}', "application/json")
            assert status == 503 and "busy" in answer["error"]
        deadline = time.monotonic() + 10  # the slot frees when the slow request ends
        while (status := post(url, b'{"row": {"x": 3}}', "application/json")[0]) == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200
        assert get(url, "/health")["limits"]["refused"]["503"] >= 1


def test_predictor_resizes_on_the_request_thread_and_predicts_a_batch_like_predict(module_image_learner):
    """``item_from_image`` gives the sample ``test_dl`` gives (decoded and resized to the model's 32 px), and one
    ``predict_batch`` of mixed photos answers each like `learn.predict` on its bytes."""
    from learnkit.serve import Predictor
    learn = module_image_learner
    p = Predictor(learn)
    bodies = [png((220, 40, 40), (48, 40)), png((40, 40, 220), (40, 64)), png((120, 90, 200), (32, 32))]
    samples = [p.item_from_image(b) for b in bodies]
    assert [tuple(s[0].shape) for s in samples] == [(3, 32, 32)] * 3 and samples[0][0].dtype.is_floating_point is False
    answers = p.predict_batch(samples)
    for body, answer in zip(bodies, answers):
        label, idx, probs = learn.predict(body)
        assert answer["prediction"] == label
        assert answer["probability"] == pytest.approx(float(probs[idx]), abs=1e-5)


def test_a_batch_runs_forward_batch_images_a_forward_with_the_same_answers(module_image_learner):
    """On a CPU a batch of 11 runs as forwards of 8 and 3 (the default ``forward_batch``), and answers exactly as
    one forward of all 11 does; ``forward_batch`` must be a positive int."""
    from learnkit.serve import Predictor
    learn = module_image_learner
    chunked, whole = Predictor(learn), Predictor(learn, forward_batch=64)
    assert chunked.forward_batch == 8
    colours = [(20 * k % 256, 40 + 15 * k, 200 - 12 * k) for k in range(11)]
    samples = [chunked.item_from_image(png(c, (40, 32))) for c in colours]
    sizes: list[int] = []
    hook = learn.model.register_forward_hook(lambda m, i, o: sizes.append(o.shape[0]))
    try:
        a, b = chunked.predict_batch(samples), whole.predict_batch(samples)
    finally:
        hook.remove()
    assert sizes == [8, 3, 11]
    assert [x["prediction"] for x in a] == [x["prediction"] for x in b]
    assert [x["probability"] for x in a] == pytest.approx([x["probability"] for x in b], abs=1e-5)
    for bad in (0, -2, 2.0, True):
        with pytest.raises(ValueError, match="forward_batch must be a positive number"):
            Predictor(learn, forward_batch=bad)


def test_serve_flags_are_checked(tmp_path, capsys):
    from learnkit.cli import main
    assert main(["serve", str(tmp_path / "model.safetensors"), "--max-mb", "0"]) == 1
    assert "--max-mb must be positive" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "model.safetensors"), "--forward-batch", "0"]) == 1
    assert "--forward-batch must be positive" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "nope.safetensors"), "--port", "0"]) == 1
    assert "no learnkit export" in capsys.readouterr().err


# --- pets (integration) ----------------------------------------------------------------------------------
@pytest.mark.integration
def test_serve_answers_like_predict_on_20_pets_photos(data_path, tmp_path):
    from learnkit.vision import ImageDataLoaders, Resize, get_image_files, vision_learner
    files = get_image_files(data_path / "pets" / "images")
    train, test = files[::20][:40], files[7::40][:20]
    dls = ImageDataLoaders.from_name_func(files[0].parent, train, lambda n: "cat" if n[0].isupper() else "dog",
                                          item_tfms=Resize(128), bs=16)
    learn = vision_learner(dls, "efficientnet_lite0", progress=False)  # ImageNet body, untrained head
    model = learn.export(tmp_path / "pets.safetensors")
    proc, url = start_server(model, cwd=tmp_path)
    try:
        with cf.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda f: post(url, f.read_bytes(), "image/jpeg"), test))
    finally:
        stop(proc)
    assert [a[0] for a in answers] == [200] * 20
    assert [a[1]["prediction"] for a in answers] == [learn.predict(f)[0] for f in test]

