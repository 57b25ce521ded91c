"""A real headless Chromium for tests of HTML pages: render a page from disk, take a screenshot, read the DOM
after load, and collect what the page wrote to the console.

Where Chromium is not installed the tests skip with the install hint, unless ``KIE_REQUIRE_BROWSER=1`` or
``CI=true`` (``.ci/run`` installs Debian's ``chromium``), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel

REQUIRE_ENV = "KIE_REQUIRE_BROWSER"
INSTALL_HINT = "install it with `apt-get install -y chromium` (Debian/Ubuntu)"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT = 180.0
"""Seconds one headless run may take: generous, a busy 2-core machine starts Chromium slowly."""
_CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\]?\s*(?P<message>.*)")


def _required() -> bool:
    truthy = ("1", "true", "yes")
    return os.environ.get(REQUIRE_ENV, "").lower() in truthy or os.environ.get("CI", "").lower() in truthy


def chromium() -> str:
    """The browser binary, or a skip (a failure where a browser is required)."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    message = f"chromium not found: {INSTALL_HINT}"
    if _required():
        pytest.fail(message + f" ({REQUIRE_ENV} or CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


class Rendered(BaseModel):
    dom: str
    console: list[str]
    screenshot: Path

    def html_attribute(self, name: str) -> str | None:
        match = re.search(rf'<html[^>]*\s{re.escape(name)}="([^"]*)"', self.dom)
        return match.group(1) if match else None


def _run(args: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    base = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        f"--user-data-dir={workdir / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=10000",
        "--window-size=1280,1600",
    ]
    return subprocess.run(
        [*base, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "HOME": str(workdir)},
    )


def render(page: Path, workdir: Path) -> Rendered:
    """Open ``page`` from disk twice (one screenshot, one DOM dump after the load event)."""
    workdir.mkdir(parents=True, exist_ok=True)
    url = page.absolute().as_uri()
    shot = workdir / "screenshot.png"
    taken = _run([f"--screenshot={shot}", url], workdir)
    assert shot.is_file(), f"no screenshot (exit {taken.returncode}): {taken.stderr[-2000:]}"
    dumped = _run(["--dump-dom", url], workdir)
    assert dumped.returncode == 0 and "<html" in dumped.stdout, dumped.stderr[-2000:]
    console = [
        m.group("message") for line in (taken.stderr + dumped.stderr).splitlines() if (m := _CONSOLE.search(line))
    ]
    return Rendered(dom=dumped.stdout, console=console, screenshot=shot)
