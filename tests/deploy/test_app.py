"""examples/app.py: started on 127.0.0.1 in its own process, an image posted over HTTP gets the model's
answer; bad uploads get a 400 with the reason."""
from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import pytest
from PIL import Image


@pytest.fixture(scope="module")
def server(app_server):
    return app_server


def _post(url: str, body: bytes, ctype: str = "image/png") -> tuple[int, dict]:
    req = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_app_answers_like_predict(server):
    url, learn, image = server
    label, idx, probs = learn.predict(image)
    status, answer = _post(url, image.read_bytes())
    assert status == 200
    assert answer["prediction"] == label
    assert answer["probability"] == pytest.approx(float(probs[idx]), abs=1e-5)
    assert [t["label"] for t in answer["top"]] == sorted(["cat", "dog"], key=lambda c: -float(probs[["cat", "dog"].index(c)]))
    # a multipart form, as `curl -F file=@photo.jpg` sends it
    boundary = "XyZ123"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cat.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, form_answer = _post(url, body, f"multipart/form-data; boundary={boundary}")
    assert status == 200 and form_answer == answer
    # the page
    with urllib.request.urlopen(url + "/", timeout=30) as res:
        page = res.read().decode()
    assert '<input type="file"' in page and "cat, dog" in page


def test_app_rejects_bad_uploads(server):
    url, _, image = server
    status, answer = _post(url, b"this is not an image")
    assert status == 400 and "not an image" in answer["error"]
    status, answer = _post(url, image.read_bytes()[:60])
    assert status == 400 and "truncated" in answer["error"]
    status, answer = _post(url, b"")
    assert status == 400 and "empty" in answer["error"]
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (40, 40, 220)).save(buf, format="JPEG")
    status, answer = _post(url, buf.getvalue(), "image/jpeg")  # any size: the app resizes like the model
    assert status == 200 and answer["prediction"] in ("cat", "dog")
