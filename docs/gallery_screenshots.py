"""Screenshots of the built gallery in headless Chromium: the card grid and one rendered notebook.

    python -m mkdocs build --strict                 # the site, in site/
    python docs/gallery_screenshots.py              # serves site/ on 127.0.0.1; writes the two PNGs below
    python docs/gallery_screenshots.py --build      # builds the site into a temporary folder first

Writes ``docs/img/docs-gallery-page.png`` (the gallery index) and ``docs/img/docs-gallery-notebook.png``
(the pets notebook, scrolled to its first plot). Needs selenium (the dev extra), Chromium and chromedriver
(Debian: ``apt-get install chromium chromium-driver``).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import io
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
IMG = REPO / "docs" / "img"
#: (page of the site, output file, CSS selector to scroll to, pixels to keep above it)
SHOTS = [("gallery/", IMG / "docs-gallery-page.png", ".grid.cards", 90),
         ("notebooks/pets/", IMG / "docs-gallery-notebook.png", ".jp-OutputArea-output img", 260)]
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars")


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``site`` on 127.0.0.1 (a free port) from a daemon thread; return the server and its URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class' name
        pass


def browser(profile: Path, width: int, height: int):
    from selenium import webdriver

    chromium = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                    None)
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        raise SystemExit("needs Chromium and chromedriver on PATH (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver))


def shoot(driver, url: str, out: Path, scroll_to: str, above: int) -> None:
    driver.get(url)
    found = driver.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "if (!e) return false; e.scrollIntoView(); window.scrollBy(0, -arguments[1]); return true;", scroll_to, above)
    if not found:
        raise SystemExit(f"{url}: nothing matches {scroll_to!r}; are the notebook outputs stored?")
    time.sleep(1.0)  # the header's title swaps with a transition on scroll
    ok = driver.execute_script("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    if not ok:
        raise SystemExit(f"{url}: an image did not load")
    img = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    img.quantize(colors=256).save(out, "PNG", optimize=True)
    print(f"{out.relative_to(REPO)}: {img.width}x{img.height}, {out.stat().st_size // 1024} KiB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--site", type=Path, default=REPO / "site", help="the built site (default: site/)")
    ap.add_argument("--build", action="store_true", help="build the site into a temporary folder first")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gallery-shots-") as tmp:
        site = args.site
        if args.build:
            site = Path(tmp, "site")
            subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
                           cwd=REPO, check=True)
        if not (site / "gallery" / "index.html").is_file():
            raise SystemExit(f"no gallery in {site}: run python -m mkdocs build --strict (or pass --build)")
        server, url = serve(site)
        driver = browser(Path(tmp, "profile"), args.width, args.height)
        try:
            for page, out, scroll_to, above in SHOTS:
                shoot(driver, url + page, out, scroll_to, above)
        finally:
            driver.quit()
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
