"""Every script in docs/examples/ runs offline (embedded emulator) and prints what the docs say it prints.

The scripts are started together (each is its own interpreter, mostly import time), usually while the docs
pages run (see tests/test_docs.py), and their results are checked one test per script, so a failure names
the example.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))

EXPECTED = {
    "credits": [r"^credits: 5000 "],
    "validate": [r"^nano-banana-2: ready_with_defaults", r"^kling-2.6-i2v: needs_input", r"^seedance-2.0: invalid"],
    "estimate": [r"^nano-banana-2: 18 credits", r"^kling-3.0-t2v: 270 credits", r"^seedance-2.0: 152 credits"],
    "preflight": [r"^nano-banana-2: allowed", r"BLOCK over_budget", r"BLOCK not_ready"],
    "text_to_image": [r"^status: succeeded", r"^image: .+\.png$"],
    "image_to_video_chain": [r"^video run: succeeded", r"^video: .+\.mp4$", r"^parents of the video run: \['\d"],
    "seedance_references": [r"task mode multimodal_reference", r"audios\[0\]: uploaded", r"^video: .+\.mp4$"],
    "batch": [r"^second pass", r"resumed=True", r"1 request\(s\) held back"],
    "artifacts_query": [
        r"^2 succeeded nano-banana-2 run",
        r"^latest image: .+\.(jpeg|jpg|png) ",
        r"^rebuilt index: 2 run",
    ],
    "deploy_fastapi": [
        r"^workers that submitted: [12] ",
        r"^all 6 requests succeeded .* every waiter was woken",
        r"^  output http://127\.0\.0\.1:\d+/runs/\S+/outputs/0 \(\d+ bytes, image/(png|jpeg)\)$",
    ],
    "deploy_aiohttp": [r"^workers that submitted: [12] ", r"^all 6 requests succeeded .* every waiter was woken"],
}
NEEDS_REDIS = {"deploy_fastapi", "deploy_aiohttp"}
EXAMPLE_TIMEOUT = 600
"""Seconds one example may take: generous, as a busy 2-core machine is slow; a hang still ends the test."""
"""Examples of several worker processes on one account: they get the suite's redis-server as KIE_COORDINATION_URL."""


def test_every_example_has_expectations() -> None:
    assert {p.stem for p in SCRIPTS} == set(EXPECTED)


async def _run(script: Path, workdir: Path, redis_url: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}  # never live, never a stray key
    env.update(
        KIE_OUTPUT_DIR=str(workdir / "outputs"),
        KIE_EXAMPLES_GENERATION_SECONDS="0.2",
        KIE_STATE_DIR=str(workdir / "state"),
    )  # its own memory of shared ledgers (the suite flushes Redis)
    if script.stem in NEEDS_REDIS and redis_url is not None:
        env["KIE_COORDINATION_URL"] = redis_url
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        "--offline",
        cwd=workdir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=EXAMPLE_TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


ExampleRuns = dict[str, tuple[int, str, str, Path]]
RESULTS: ExampleRuns = {}
"""Filled once per test session; tests/test_docs.py fills it while the docs pages run, to overlap the waits."""


REDIS: dict[str, str | None] = {}
"""The suite's Redis URL for NEEDS_REDIS, or why there is none (``problem``: a skip, or a failure under CI)."""


def redis_for_examples(request: pytest.FixtureRequest) -> str | None:
    """The session's redis-server URL; None (and the reason kept for the deploy examples' tests) without one."""
    if "url" not in REDIS:
        try:
            server = request.getfixturevalue("redis_server")
            if server.proc is None:
                server.start()  # an earlier test stopped it
            REDIS.update(url=server.url, problem=None, fatal=None)
        except pytest.skip.Exception as exc:
            REDIS.update(url=None, problem=str(exc), fatal=None)
        except pytest.fail.Exception as exc:
            REDIS.update(url=None, problem=str(exc), fatal="1")
    return REDIS["url"]


async def run_examples(base: Path, redis_url: str | None = None) -> ExampleRuns:
    """Run every example at once, each in its own folder under ``base``."""
    for script in SCRIPTS:
        (base / script.stem).mkdir(parents=True)
    results = await asyncio.gather(*(_run(s, base / s.stem, redis_url) for s in SCRIPTS))
    return {s.stem: (*r, base / s.stem) for s, r in zip(SCRIPTS, results, strict=True)}


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> ExampleRuns:
    redis_url = redis_for_examples(request)
    if not RESULTS:
        RESULTS.update(asyncio.run(run_examples(tmp_path_factory.mktemp("examples"), redis_url)))
    return RESULTS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_offline(name: str, example_runs: dict[str, tuple[int, str, str, Path]]) -> None:
    if name in NEEDS_REDIS and REDIS.get("url") is None:
        (pytest.fail if REDIS.get("fatal") else pytest.skip)(f"{name} needs Redis: {REDIS.get('problem')}")
    code, out, err, workdir = example_runs[name]
    assert code == 0, f"{name} exited {code}\n{out[-2000:]}\n{err[-3000:]}"
    for pattern in EXPECTED[name]:
        assert re.search(pattern, out, re.M), f"{name}: no line matching {pattern!r} in:\n{out}"
    for path in re.findall(r"^(?:image|video): (.+)$", out, re.M):
        produced = Path(path)
        assert produced.is_file() and produced.stat().st_size > 0, path
        assert str(workdir) in str(produced), f"{name} wrote outside its working folder: {path}"


def test_examples_without_offline_refuse_the_real_service(tmp_path: Path) -> None:
    """No --offline and no KIE_ALLOW_LIVE: the session refuses before any request (exit 2, a clear message)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIE_")}
    env["KIE_API_KEY"] = "not-a-real-key"

    async def go() -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / "credits.py"),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, _, err = asyncio.run(go())
    assert code == 2 and "KIE_ALLOW_LIVE" in err, err


def test_the_fastapi_app_refuses_to_start_without_public_url(tmp_path: Path) -> None:
    """Without PUBLIC_URL every request would fail: the app stops at start-up and names the variable to set."""
    env = {k: v for k, v in os.environ.items() if k not in ("PUBLIC_URL",) and not k.startswith("KIE_")}
    env.update(KIE_API_KEY="kie-emulator-key", KIE_BASE_URL="http://127.0.0.1:9", KIE_OUTPUT_DIR=str(tmp_path))

    async def go(extra: dict[str, str]) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "uvicorn",
            "deploy_fastapi:app",
            "--app-dir",
            str(EXAMPLES),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            cwd=tmp_path,
            env={**env, **extra},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)  # it exits by itself: no port to wait on
        assert proc.returncode is not None
        return proc.returncode, out.decode() + err.decode()

    for extra, shown in (({}, "PUBLIC_URL is not set"), ({"PUBLIC_URL": "api.example.com"}, "'api.example.com'")):
        code, text = asyncio.run(go(extra))
        assert code != 0 and shown in text and "export PUBLIC_URL=https://" in text, text
        assert "Application startup failed" in text
