"""Headless Chromium (Debian's `chromium`) with no network, for the reports' HTML test and docs/screenshots.py:
every host resolves to nothing and every proxy is a dead port, so a page that tried to load anything would show
it missing; each run gets a fresh profile of its own."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium")
TIMEOUT = 120  # s for one page; it takes about 2 on this machine


def chromium(*arguments: str, timeout: float = TIMEOUT) -> str:
    """Run headless Chromium with `arguments` (the page's URL last) and return what it printed."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed (Debian's `chromium` package)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--no-first-run",
                   "--disable-background-networking", "--disable-extensions", f"--user-data-dir={profile}",
                   *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True).stdout


def dom(page: Path) -> str:
    """The DOM Chromium built from the file `page`, serialized."""
    return chromium("--dump-dom", page.as_uri())


def page_height(page: Path, width: int) -> int:
    """The height in px of the file `page` laid out `width` px wide. The page itself runs no script: a copy with
    one line that writes its height into the DOM is measured instead."""
    text = page.read_text(encoding="utf-8")
    probe = page.with_name(f"{page.stem}.height.html")
    probe.write_text(text.replace("</body>", "<script>document.body.dataset.height = "
                                  "Math.ceil(document.documentElement.scrollHeight)</script></body>"), encoding="utf-8")
    try:
        built = chromium(f"--window-size={width},800", "--dump-dom", probe.as_uri())
    finally:
        probe.unlink()
    found = re.search(r'data-height="(\d+)"', built)
    if found is None:
        raise RuntimeError(f"could not measure the height of {page}")
    return int(found.group(1))


def screenshot(page: Path, png: Path, width: int, height: int | None = None) -> Path:
    """A PNG of the file `page` `width` px wide and `height` px high (None: the whole page's height)."""
    height = height or page_height(page, width)
    chromium("--hide-scrollbars", f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri())
    return png
