"""What the deployment examples share offline: Redis, an emulator that signs callbacks, worker processes on one
port, and a client that sends them requests and checks every waiter was woken by a callback.

Not an example itself (the leading underscore keeps the test runner from starting it on its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from kie_async import KieConfigError
from kie_async.emulator import EmulatorConfig, KieEmulator

GENERATION_SECONDS_ENV = "KIE_EXAMPLES_GENERATION_SECONDS"
SERVICE_TIMEOUT = 120.0
"""Seconds a helper process (redis-server, the app's workers) may take to answer."""
SAFETY_POLL_SECONDS = 60.0
"""The waiters' slow safety poll (the SDK default): a request that took this long was never woken by a callback."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_for_offline() -> Iterator[str]:
    """``KIE_COORDINATION_URL`` if set, else a throwaway ``redis-server`` on a free port (no persistence)."""
    url = os.environ.get("KIE_COORDINATION_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise KieConfigError(
            "the deployment examples need Redis: set KIE_COORDINATION_URL or install redis-server",
            hint="apt-get install -y redis-server, or docker run -d -p 6379:6379 redis:7",
        )
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + SERVICE_TIMEOUT  # generous: a busy machine starts processes slowly
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
                if proc.poll() is not None:
                    raise KieConfigError(f"redis-server exited with code {proc.returncode} (port {port} taken?)")
                if time.monotonic() > deadline:
                    raise KieConfigError(f"redis-server did not answer on port {port} within {SERVICE_TIMEOUT:g} s")
                time.sleep(0.05)
            print(f"offline: throwaway redis-server on port {port}")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


async def _get_json(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    async with http.request(method, url, **kwargs) as response:
        response.raise_for_status()
        data: dict[str, Any] = await response.json()
        return data


async def _fetch_outputs(http: aiohttp.ClientSession, answer: dict[str, Any]) -> list[tuple[str, int, str]]:
    """Each output the answer names (``outputs``: path and URL), fetched from the URL the app gave."""
    fetched = []
    for output in answer.get("outputs") or []:
        async with http.get(output["url"]) as response:
            response.raise_for_status()
            fetched.append((output["url"], len(await response.read()), response.content_type))
    return fetched


async def _ready(http: aiohttp.ClientSession, base: str, procs: list[asyncio.subprocess.Process], workers: int) -> None:
    """Until ``workers`` different processes have answered /health (each request is a new connection)."""
    seen: set[int] = set()
    deadline = time.monotonic() + SERVICE_TIMEOUT
    while len(seen) < workers:
        with contextlib.suppress(aiohttp.ClientError):
            seen.add(int((await _get_json(http, "GET", f"{base}/health"))["worker"]))
            continue
        for proc in procs:
            if proc.returncode is not None:
                raise KieConfigError(f"a worker process exited with code {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise KieConfigError(f"only {len(seen)} of {workers} workers answered /health within {SERVICE_TIMEOUT:g} s")
        await asyncio.sleep(0.1)


async def run_offline(name: str, commands: Callable[[int], list[list[str]]], *, workers: int, requests: int) -> int:
    """Start ``commands(port)`` (the worker processes) against an emulator and Redis; send ``requests`` requests."""
    seconds = float(os.environ.get(GENERATION_SECONDS_ENV, "1.0"))
    hmac_key = secrets.token_urlsafe(16)
    with redis_for_offline() as redis_url:
        config = EmulatorConfig(generation_seconds=seconds, webhook_hmac_key=hmac_key)
        async with KieEmulator(config) as emulator:
            print(f"offline: embedded Kie.ai emulator at {emulator.base_url} (signs callbacks)")
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {
                **os.environ,
                "KIE_API_KEY": emulator.api_key,
                "KIE_BASE_URL": emulator.base_url,
                "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
                "KIE_COORDINATION_URL": redis_url,
                "KIE_COORDINATION_PREFIX": f"demo-{secrets.token_hex(4)}:",  # a private corner of a shared Redis
                "KIE_WEBHOOK_HMAC_KEY": hmac_key,
                "PUBLIC_URL": base,
            }
            procs = [
                await asyncio.create_subprocess_exec(*argv, env=env, start_new_session=True) for argv in commands(port)
            ]
            try:
                # A new connection per request, so the kernel spreads them over the workers like a load balancer.
                connector = aiohttp.TCPConnector(force_close=True)
                timeout = aiohttp.ClientTimeout(total=120)
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
                    await _ready(http, base, procs, workers)
                    print(f"{name}: {workers} worker processes on {base}, one account, Redis at {redis_url}")
                    started = time.monotonic()
                    prompts = [f"a lighthouse at dusk, take {i}" for i in range(requests)]
                    answers = await asyncio.gather(
                        *(_get_json(http, "POST", f"{base}/images", json={"prompt": p}) for p in prompts)
                    )
                    wall = time.monotonic() - started
                    served = [await _fetch_outputs(http, answer) for answer in answers]
            finally:
                for proc in procs:
                    if proc.returncode is None:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGTERM)
                for proc in procs:
                    try:
                        await asyncio.wait_for(proc.wait(), timeout=15)
                    except TimeoutError:
                        os.killpg(proc.pid, signal.SIGKILL)
                        await proc.wait()
            reads = list(emulator.stats.status_requests.values())
    for i, answer in enumerate(answers):
        print(
            f"request {i}: {answer['status']} on worker {answer['worker']}, waited {answer['wait_seconds']:.2f}s, "
            f"task {answer['task_id']}"
        )
        for url, size, kind in served[i]:
            print(f"  output {url} ({size} bytes, {kind})")
    ok = all(a["status"] == "succeeded" for a in answers)
    ok = ok and all(size > 0 for files in served for _, size, _ in files)
    slowest = max(a["wait_seconds"] for a in answers)
    submitting = sorted({a["worker"] for a in answers})
    print(f"workers that submitted: {len(submitting)} ({', '.join(map(str, submitting))})")
    print(
        f"status reads per task: {statistics.fmean(reads):.1f} (callback-driven waits poll every "
        f"{SAFETY_POLL_SECONDS:g} s)"
    )
    if ok and slowest < SAFETY_POLL_SECONDS / 2:
        print(
            f"all {requests} requests succeeded in {wall:.1f}s; slowest wait {slowest:.2f}s: every waiter was woken "
            f"by its callback, whichever worker received it"
        )
        return 0
    print(
        f"error: {sum(a['status'] != 'succeeded' for a in answers)} request(s) failed or a waiter was not woken",
        file=sys.stderr,
    )
    return 1
