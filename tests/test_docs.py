"""Every code block in docs/*.md runs, against the emulator, in the order the page shows it.

The conventions (stated for readers in docs/README.md, enforced here):

* A ``python`` block is, by default, the body of ``async def main(kie, emulator)``: ``kie`` is an open
  ``KieSession`` on a fresh emulator (fast polling), ``emulator`` is that ``KieEmulator``. It may ``await``.
* ``<!-- docs:script -->`` before a ``python`` block: a complete script, run with ``python`` in a subprocess.
* A ``bash`` block runs with ``bash -euo pipefail``; ``KIE_BASE_URL``/``KIE_UPLOAD_BASE_URL``/``KIE_API_KEY``
  point at a fresh emulator and ``KIE_ALLOW_LIVE`` is unset, so nothing can reach the real Kie.ai.
* ``<!-- docs:live -->`` before a block: needs a real key; only syntax-checked (few, counted below).
* ``<!-- docs:file PATH -->`` before any block: its text is written to ``PATH`` for the blocks after it.
* ``<!-- docs:sandbox -->`` anywhere on a page: the page runs in a copy of the checkout (own ``model_specs/``),
  with ``kie-async`` on ``PATH`` running that copy.
* The working directory has ``docs/`` linked in, so ``python docs/examples/NAME.py`` works as in a checkout.

All blocks of a page share one working directory. A block in any other language, a marker the harness does
not know, or a page missing from the index fails the suite, so no block is ever skipped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kie_async import KieSession, PollSettings
from kie_async.emulator import EmulatorConfig, KieEmulator
from tests import test_examples

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md"))
FENCE = re.compile(r"^```([A-Za-z0-9_-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
MARKER = re.compile(r"<!--\s*docs:([a-z-]+)(?:\s+(\S+))?\s*-->\s*$")
KNOWN_MARKERS = {"script", "live", "file", "sandbox"}
RUNNABLE = {"python", "bash"}
MAX_LIVE_BLOCKS = 6
FAST_POLL = PollSettings(schedule=((float("inf"), 0.05),))
BLOCK_TIMEOUT = 300.0
"""Seconds one block may take: generous, as a busy 2-core machine is slow; a hang still ends the page."""
GROUP_TIMEOUT = 1500.0
"""Seconds one worker interpreter (a group of pages, one after another) may take."""
NEEDS_REDIS = {"deployment.md"}
"""Pages about several processes on one account: their blocks get the suite's redis-server as KIE_COORDINATION_URL."""
REDIS_URL_ENV = "KIE_DOCS_REDIS_URL"  # how page_runs hands the URL to its worker interpreters


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    marker: str | None
    arg: str | None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def page_blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    blocks: list[Block] = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        found = MARKER.search(before)
        marker, arg = (found.group(1), found.group(2)) if found else (None, None)
        blocks.append(Block(page.name, line, match.group(1), match.group(2), marker, arg))
    return blocks


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in page_blocks(page)]


def is_sandbox(page: Path) -> bool:
    return "<!-- docs:sandbox -->" in page.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------ structure


def test_docs_exist_and_the_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    pages = {p.name for p in PAGES} - {"README.md"}
    assert len(pages) >= 15, sorted(pages)
    linked = set(re.findall(r"\]\(([a-z0-9-]+\.md)\)", index))
    assert pages <= linked, f"pages missing from docs/README.md: {sorted(pages - linked)}"
    assert linked <= pages, f"index links to missing pages: {sorted(linked - pages)}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_relative_links_and_anchors_in_docs_resolve() -> None:
    link = re.compile(r"\]\(((?:\.\./|\./)?[A-Za-z0-9_./-]*)(?:#([^)]*))?\)")
    for page in PAGES:
        for target, anchor in link.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
            path = (page.parent / target).resolve() if target else page
            assert path.exists(), f"docs/{page.name}: broken link {target}"
            if anchor and path.suffix == ".md":
                assert anchor in _anchors(path), f"docs/{page.name}: no heading for #{anchor} in {path.name}"


def test_tables_have_as_many_cells_as_their_header() -> None:
    """A ``|`` inside a code span still splits a GitHub table cell; catch the broken rows."""
    for page in PAGES:
        width = None
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.startswith("|"):
                width = None
                continue
            cells = len(re.findall(r"(?<!\\)\|", line))
            width = width or cells
            assert cells == width, f"docs/{page.name}:{number}: {cells - 1} cells, header has {width - 1}"


def test_every_block_is_classified_and_none_is_skipped_silently() -> None:
    blocks = all_blocks()
    assert len(blocks) >= 40, len(blocks)
    problems: list[str] = []
    for b in blocks:
        if b.marker is not None and b.marker not in KNOWN_MARKERS - {"sandbox"}:
            problems.append(f"{b.where}: unknown marker docs:{b.marker}")
        if b.marker == "file":
            if not b.arg:
                problems.append(f"{b.where}: docs:file needs a path")
            continue
        if b.lang not in RUNNABLE:
            problems.append(f"{b.where}: a ```{b.lang or '(none)'} block must be python/bash or carry docs:file")
        if b.marker == "script" and b.lang != "python":
            problems.append(f"{b.where}: docs:script is for python blocks")
        if b.lang == "python" and b.marker is None and "asyncio.run(" in b.code:
            problems.append(f"{b.where}: a harness block runs inside async main(); mark complete scripts docs:script")
    assert not problems, "\n".join(problems)
    live = [b.where for b in blocks if b.marker == "live"]
    assert 1 <= len(live) <= MAX_LIVE_BLOCKS, live


def test_every_file_block_is_used_by_a_later_block() -> None:
    for page in PAGES:
        blocks = page_blocks(page)
        for i, b in enumerate(blocks):
            if b.marker == "file":
                assert b.arg is not None
                later = "\n".join(x.code for x in blocks[i + 1 :])
                used = Path(b.arg).name in later or Path(b.arg).parent.name in later.split('"')
                assert used, f"{b.where}: {b.arg} is written but no later block uses it"


@pytest.mark.parametrize("block", [b for b in all_blocks() if b.marker == "live"], ids=lambda b: b.where)
def test_live_blocks_are_at_least_valid_syntax(block: Block) -> None:
    if block.lang == "python":
        compile(block.code, block.where, "exec")
    else:
        done = subprocess.run(["bash", "-n", "-c", block.code], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{block.where}: {done.stderr}"
    assert "KIE_ALLOW_LIVE" in block.code or "allow_live" in block.code or "from_env" in block.code, (
        f"{block.where}: a live block must show the explicit live opt-in"
    )


# ------------------------------------------------------------------------------------------------ running


def _sandbox(dest: Path) -> None:
    """A private copy of the checkout so a page may add files under model_specs/ without touching the repo."""
    for name in ("kie_async", "model_specs", "prompt_presets", "pricing"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "_data"))
    shim = dest / "bin" / "kie-async"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kie_async "$@"\n')
    shim.chmod(0o755)


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _env(workdir: Path, emulator: KieEmulator, sandbox: bool, page: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    if page in NEEDS_REDIS and os.environ.get(REDIS_URL_ENV):
        env["KIE_COORDINATION_URL"] = os.environ[REDIS_URL_ENV]
    path = [str(Path(sys.executable).parent), env.get("PATH", "")]
    if sandbox:
        path.insert(0, str(workdir / "bin"))
        env["PYTHONPATH"] = str(workdir)
    env.update(
        PATH=os.pathsep.join(path),
        KIE_BASE_URL=emulator.base_url,
        KIE_UPLOAD_BASE_URL=emulator.upload_base_url,
        KIE_API_KEY=emulator.api_key,
        KIE_OUTPUT_DIR=str(workdir / "outputs"),
        KIE_EXAMPLES_GENERATION_SECONDS="0.2",
        KIE_STATE_DIR=str(workdir / "state"),  # the page's own purchase ledger, never the user's
    )
    return env


async def _run_harness_block(block: Block, emulator: KieEmulator) -> str:
    source = "async def __docs_main(kie, emulator):\n" + textwrap.indent(block.code, "    ") + "\n    return None\n"
    namespace: dict[str, object] = {"__name__": f"docs_{block.page}_{block.line}"}
    exec(compile(source, block.where, "exec"), namespace)
    main = namespace["__docs_main"]
    out = io.StringIO()
    try:
        async with KieSession(emulator.settings(poll=FAST_POLL)) as kie:
            with contextlib.redirect_stdout(out):
                await asyncio.wait_for(main(kie, emulator), timeout=BLOCK_TIMEOUT)  # type: ignore[operator]
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc}\n--- printed before it ---\n{out.getvalue()}") from exc
    return out.getvalue()


async def _run_subprocess(argv: list[str], workdir: Path, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=BLOCK_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_page(page: Path, workdir: Path) -> list[str]:
    sandbox = is_sandbox(page)
    if sandbox:
        await asyncio.to_thread(_sandbox, workdir)
    (workdir / "docs").symlink_to(DOCS)  # so `python docs/examples/NAME.py` works as it does in a checkout
    report: list[str] = []
    for block in page_blocks(page):
        if block.marker == "live":
            continue  # syntax-checked by test_live_blocks_are_at_least_valid_syntax
        if block.marker == "file":
            assert block.arg is not None
            target = workdir / block.arg
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
            report.append(f"{block.where}: wrote {block.arg}")
            continue
        async with KieEmulator(EmulatorConfig(generation_seconds=0.2)) as emulator:
            env = _env(workdir, emulator, sandbox, page.name)
            if block.lang == "python" and block.marker is None:
                saved = dict(os.environ)
                os.environ.update({k: v for k, v in env.items() if k.startswith("KIE_")})
                try:
                    with _chdir(workdir):
                        out = await _run_harness_block(block, emulator)
                except AssertionError as exc:
                    raise AssertionError(f"{block.where}: {exc}") from exc
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
            elif block.lang == "python":
                script = workdir / f".docs_block_{block.line}.py"
                script.write_text(block.code, encoding="utf-8")
                code, out, err = await _run_subprocess([sys.executable, str(script)], workdir, env)
                assert code == 0, f"{block.where} exited {code}:\n{out[-2000:]}\n{err[-3000:]}"
            elif block.lang == "bash":
                code, out, err = await _run_subprocess(["bash", "-euo", "pipefail", "-c", block.code], workdir, env)
                assert code == 0, f"{block.where} exited {code}:\n{out[-2000:]}\n{err[-3000:]}"
            else:
                raise AssertionError(f"{block.where}: cannot run a ```{block.lang} block (see the conventions)")
        report.append(f"{block.where}: ran ({block.lang}), {len(out)} chars of output")
    return report


RUN_PAGES = [p for p in PAGES if any(b.marker != "live" for b in page_blocks(p))]


def _in_process_only(page: Path) -> bool:
    """Pages whose blocks all run inside the worker share one worker (an interpreter start costs ~1 s CPU)."""
    runnable = [b for b in page_blocks(page) if b.marker not in ("live", "file")]
    return not is_sandbox(page) and all(b.lang == "python" and b.marker is None for b in runnable)


@dataclass(frozen=True)
class PageRun:
    failed: bool
    lines: list[str]
    stderr: str


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, PageRun]:
    """Run every page at once in worker interpreters (pages are independent; most time is waiting)."""
    base = tmp_path_factory.mktemp("docs")
    redis_url = test_examples.redis_for_examples(request)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env["KIE_STATE_DIR"] = str(base / "state")  # the pages' own memory of shared ledgers (the suite flushes Redis)
    pages_to_run = [p for p in RUN_PAGES if redis_url is not None or p.name not in NEEDS_REDIS]
    if redis_url is not None:
        env[REDIS_URL_ENV] = redis_url
    light = [p for p in pages_to_run if _in_process_only(p)]
    groups = [light] + [[p] for p in pages_to_run if p not in light]

    async def worker(pages: list[Path]) -> tuple[list[Path], str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            str(base),
            *map(str, pages),
            cwd=base,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=GROUP_TIMEOUT)
        return pages, out.decode(), err.decode()

    async def everything() -> list[tuple[list[Path], str, str]]:
        workers = asyncio.gather(*(worker(g) for g in groups if g))
        if test_examples.RESULTS or os.environ.get("PYTEST_XDIST_WORKER"):
            # Under pytest-xdist, tests/test_examples.py may run on another worker: it runs them there itself.
            return list(await workers)
        # The examples wait on the emulator too; running them now overlaps their waits with the pages'.
        done, example_results = await asyncio.gather(workers, test_examples.run_examples(base / "_examples", redis_url))
        test_examples.RESULTS.update(example_results)
        return list(done)

    runs: dict[str, PageRun] = {}
    for pages, out, err in asyncio.run(everything()):
        for page in pages:
            prefix = f"docs/{page.name}:"
            runs[page.name] = PageRun(
                failed=f"FAILED docs/{page.name}" in out or not out.strip(),
                lines=[line for line in out.splitlines() if line.startswith(prefix)],
                stderr=err,
            )
    return runs


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: p.name)
def test_page_blocks_run_against_the_emulator(page: Path, page_runs: dict[str, PageRun]) -> None:
    if page.name in NEEDS_REDIS and test_examples.REDIS.get("url") is None:
        fail_or_skip = pytest.fail if test_examples.REDIS.get("fatal") else pytest.skip
        fail_or_skip(f"docs/{page.name} needs Redis: {test_examples.REDIS.get('problem')}")
    run = page_runs[page.name]
    assert not run.failed, f"docs/{page.name} failed:\n{run.stderr[-6000:]}"
    expected = [b for b in page_blocks(page) if b.marker != "live"]
    assert len(run.lines) == len(expected), run.lines


def _worker(base: Path, pages: list[Path]) -> int:
    """``python tests/test_docs.py BASE PAGE...``: run pages one after another, each in BASE/<page stem>."""
    failures = 0
    for page in pages:
        workdir = base / page.stem
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            for line in asyncio.run(run_page(page, workdir)):
                print(line, flush=True)
        except Exception:
            failures += 1
            print(f"FAILED docs/{page.name}", flush=True)
            traceback.print_exc()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(_worker(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]))
