"""``kie-async artifacts gallery``: a static page of real runs, rendered by a real headless Chromium from disk."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import pyvips

from kie_async import KieSession, PipelineOptions, RawUserRequest, run_pipeline
from kie_async.artifacts import ArtifactSettings, IndexEntry, RunStatus
from kie_async.artifacts.gallery import GALLERY_FILENAME, render_gallery, write_gallery
from kie_async.core.settings import PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.interfaces.cli import main
from tests.browser import render

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)> "quoted"'


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and values.get("src"):
            self.images.append(values["src"] or "")
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")
        if tag == "script":
            self.scripts += 1


def _parse(text: str) -> _Links:
    parser = _Links()
    parser.feed(text)
    return parser


FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),), timeout=120.0)
"""Poll every 50 ms: the emulator finishes in 0.1 s, and the default schedule would wait seconds per run."""


async def _make_runs(root: Path) -> None:
    """An image run (hostile prompt, tagged), a video chained from it, and a failed run, all under ``root``."""
    options = PipelineOptions(artifacts=ArtifactSettings(root=root), tags=["keeper"])
    async with (
        KieEmulator(EmulatorConfig(generation_seconds=0.1)) as emulator,
        KieSession(emulator.settings(poll=FAST_POLL)) as kie,
    ):
        image = await run_pipeline(RawUserRequest(model_key="nano-banana-2", prompt=HOSTILE), kie, options=options)
        assert image.succeeded, image.error
        video = await run_pipeline(
            RawUserRequest(
                model_key="kling-3.0",
                prompt="waves below the lighthouse",
                images=[image.outputs[0].as_media("first_frame")],
                options={"duration": 5, "mode": "std", "sound": False},
            ),
            kie,
            options=PipelineOptions(artifacts=ArtifactSettings(root=root)),
        )
        assert video.succeeded and video.parent_run_ids == [image.run_id], video.error
        emulator.fail_next(code="500", msg="content flagged")
        failed = await run_pipeline(
            RawUserRequest(model_key="nano-banana-2", prompt="a fox"),
            kie,
            options=PipelineOptions(artifacts=ArtifactSettings(root=root)),
        )
        assert failed.status == "failed"


@pytest.fixture(scope="module")
def _runs_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runs are made once per module (three pipeline runs); every test gets its own copy of them."""
    root = tmp_path_factory.mktemp("gallery-runs") / "outputs"
    asyncio.run(_make_runs(root))
    return root


@pytest.fixture
def root(_runs_once: Path, tmp_path: Path) -> Path:
    """A private copy of the artifacts root (tests write pages into it and delete thumbnails from it)."""
    root = tmp_path / "outputs"
    shutil.copytree(_runs_once, root, symlinks=True)
    return root


def _assert_links_resolve(page: Path, text: str) -> _Links:
    links = _parse(text)
    for target in links.links + links.images:
        if target.startswith("#"):
            assert f'id="{target[1:]}"' in text, target
            continue
        parts = urlsplit(target)
        assert not parts.scheme and not parts.netloc and not target.startswith("/"), f"not relative: {target}"
        assert (page.parent / unquote(parts.path)).exists(), f"broken link {target}"
    return links


async def test_the_gallery_renders_in_a_real_browser(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"  # the page outside the root: its links climb out of its folder and back in
    argv = ["artifacts", "gallery", "--root", str(root), "--out", str(site), "--json"]
    assert await asyncio.to_thread(main, argv) == 0
    report = json.loads(capsys.readouterr().out)
    page = site / GALLERY_FILENAME
    assert report["path"] == str(page) and report["runs"] == 3
    text = page.read_text(encoding="utf-8")

    links = _assert_links_resolve(page, text)
    assert links.scripts == 1  # only the page's own: the hostile prompt is text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img src=x onerror=alert(1)&gt;" in text
    assert len(links.images) == report["images"] >= 1
    assert "http://" not in text and "https://" not in text  # no URL: a signed download link is a credential
    for status in ("succeeded", "failed"):
        assert f">{status}</span>" in text
    assert "keeper" in text and "kling-3.0" in text and "waves below the lighthouse" in text

    runs = sorted((root / "runs").iterdir())
    image_run, video_run = (next(r.name for r in runs if model in r.name) for model in ("nano-banana-2", "kling"))
    assert f'href="#run-{image_run}"' in text.split(f'id="run-{video_run}"')[1].split("</article>")[0]  # from
    assert f'href="#run-{video_run}"' in text.split(f'id="run-{image_run}"')[1].split("</article>")[0]  # used by

    shown = await asyncio.to_thread(render, page, tmp_path / "browser")
    assert shown.console == []  # no console output at all: no error, no warning
    assert shown.html_attribute("data-errors") == "0"
    assert shown.html_attribute("data-images-broken") == "0"
    assert shown.html_attribute("data-images-loaded") == str(len(links.images))
    assert "&lt;script&gt;alert" in shown.dom and "<script>alert" not in shown.dom
    picture = pyvips.Image.new_from_file(str(shown.screenshot))
    assert picture.width >= 800 and picture.height >= 600
    assert picture.deviate() > 1.0  # not a blank page


async def test_the_browser_check_sees_a_broken_image_and_a_console_error(root: Path, tmp_path: Path) -> None:
    """The checks above can fail: a thumbnail deleted after the page was written, and a script error."""
    page = (await write_gallery(root)).path
    assert page == (root / GALLERY_FILENAME).absolute()
    text = page.read_text(encoding="utf-8")
    pictures = _parse(text).images
    assert pictures
    (page.parent / unquote(pictures[0])).unlink()
    page.write_text(text.replace("</body>", "<script>console.error('seen'); missing();</script></body>"))
    shown = await asyncio.to_thread(render, page, tmp_path / "browser")
    assert shown.html_attribute("data-images-broken") == "1"
    assert shown.html_attribute("data-errors") == "1"
    assert any("seen" in line for line in shown.console) and any("missing" in line for line in shown.console)
    assert 'class="kie-broken"' in shown.dom


async def test_the_page_moves_with_the_root(root: Path, tmp_path: Path) -> None:
    await write_gallery(root)
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, moved)
    _assert_links_resolve(moved / GALLERY_FILENAME, (moved / GALLERY_FILENAME).read_text(encoding="utf-8"))


async def test_filters_tag_and_since(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await asyncio.to_thread(main, ["artifacts", "gallery", "--root", str(root), "--tag", "keeper"]) == 0
    printed = capsys.readouterr().out
    assert "(1 run(s)" in printed and "file://" in printed
    text = (root / GALLERY_FILENAME).read_text(encoding="utf-8")
    assert text.count('<article class="kie-card"') == 1 and "tag keeper" in text
    future = "2999-01-01T00:00:00+00:00"
    assert await asyncio.to_thread(main, ["artifacts", "gallery", "--root", str(root), "--since", future]) == 0
    assert "No runs match." in (root / GALLERY_FILENAME).read_text(encoding="utf-8")
    assert await asyncio.to_thread(main, ["artifacts", "gallery", "--root", str(root), "--since", "yesterday"]) == 2
    assert "since" in capsys.readouterr().err


def test_render_is_pure_and_escapes_every_field() -> None:
    now = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    entry = IndexEntry(
        run_id='r1"><b>',
        run_dir="runs/r1",
        status=RunStatus.SUCCEEDED,
        created_at=now,
        recorded_at=now,
        model_key="m<i>",
        prompt=HOSTILE,
        tags=["<t>"],
        notes="<u>n</u>",
        parent_run_ids=["p<1>"],
        assets=[
            {"role": "output", "kind": "image", "path": "runs/r1/outputs/a b#c.png", "thumb": "../../etc/passwd"}
        ],  # a path leaving the root is not linked
    )
    page = render_gallery([entry], link_prefix=".", generated_at=now)
    assert page == render_gallery([entry], link_prefix=".", generated_at=now)
    for raw in ('"><b>', "<i>", "<t>", "<u>", "p<1>", "<img src=x"):
        assert raw not in page
    assert 'href="./runs/r1/outputs/a%20b%23c.png"' in page and "passwd" not in page
    assert _parse(page).scripts == 1
