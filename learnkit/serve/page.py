"""The HTML page the server shows at ``/``: upload a photo (or type a text), see the top classes."""
from __future__ import annotations

import html

__all__ = ["render_page"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem; }}
 #preview {{ max-width: 100%; max-height: 18rem; display: block; margin: 1rem 0; }}
 textarea {{ width: 100%; }}
 table {{ border-collapse: collapse; }} td {{ padding: .2rem .8rem .2rem 0; }}
 .bar {{ background: #3f51b5; height: .8rem; }} #error {{ color: #b00020; }}
</style></head>
<body>
<h1>{title}</h1>
<p>Classes: {classes}</p>
<form id="form">{input} <button>Predict</button></form>
<img id="preview" alt="">
<h2 id="label"></h2>
<table id="top"></table>
<p id="error"></p>
<p><small>The JSON API: <a href="docs">docs</a>, <a href="info">info</a>, <a href="health">health</a>.</small></p>
<script>
const form = document.getElementById("form"), file = document.getElementById("file"),
      text = document.getElementById("text");
form.addEventListener("submit", async (event) => {{
  event.preventDefault();
  let req;
  if (file) {{
    const f = file.files[0];
    if (!f) return;
    document.getElementById("preview").src = URL.createObjectURL(f);
    req = {{method: "POST", body: f, headers: {{"Content-Type": f.type || "application/octet-stream"}}}};
  }} else {{
    req = {{method: "POST", body: JSON.stringify({{text: text.value}}), headers: {{"Content-Type": "application/json"}}}};
  }}
  const res = await fetch("predict", req);
  const out = await res.json();
  document.getElementById("error").textContent = out.error || "";
  document.getElementById("label").textContent = out.prediction === undefined ? "" : String(out.prediction);
  document.getElementById("top").innerHTML = (out.top || []).map(t =>
    `<tr><td>${{t.label}}</td><td>${{t.probability.toFixed(3)}}</td>` +
    `<td><div class="bar" style="width:${{Math.round(200 * t.probability)}}px"></div></td></tr>`).join("");
}});
</script>
</body></html>
"""

_IMAGE_INPUT = '<input type="file" id="file" name="file" accept="image/*">'
_TEXT_INPUT = '<textarea id="text" name="text" rows="6" placeholder="Type or paste a text"></textarea><br>'


def render_page(classes: list | None, images: bool = True) -> str:
    """The upload page for a model with these classes: a file input for an image model, a text box otherwise.

    >>> page = render_page(["cat", "dog"])
    >>> '<input type="file"' in page and "cat, dog" in page
    True
    """
    title = "What is in the photo?" if images else "What is this text?"
    return _PAGE.format(title=title, classes=html.escape(", ".join(map(str, classes or []))),
                        input=_IMAGE_INPUT if images else _TEXT_INPUT)
