"""The download writer thread: many batches land byte-exact, a disk error surfaces typed, nothing is left behind.

A body larger than several batches exercises the hand-off and the back-pressure between the loop and the
writer thread; the sha256 the download reports must be the file's; a destination whose folder cannot exist
ends in the OS error with no temp file; a writer that is behind never leaves a partial file on cancel.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from kie_async import KieSession
from kie_async.emulator import EmulatorConfig, KieEmulator
from kie_async.wire.download import BATCH_BYTES


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_multi_batch_body_lands_exact(tmp_path: Path) -> None:
    size = 5 * BATCH_BYTES + 12345  # several hand-offs, the last one partial
    async with KieEmulator(EmulatorConfig()) as emulator, KieSession(emulator.settings()) as kie:
        result = await kie.download(f"{emulator.base_url}/_emulator/blob/{size}", tmp_path / "sub" / "big.bin")
    target = tmp_path / "sub" / "big.bin"
    assert result.bytes_written == size == target.stat().st_size
    assert result.sha256 == await asyncio.to_thread(_sha, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["big.bin"]


async def test_unwritable_destination_fails_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    async with KieEmulator(EmulatorConfig()) as emulator, KieSession(emulator.settings()) as kie:
        with pytest.raises(OSError):
            await kie.download(f"{emulator.base_url}/_emulator/blob/{3 * BATCH_BYTES}", blocker / "out.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


async def test_cancel_mid_body_removes_the_temp_file(tmp_path: Path) -> None:
    async with KieEmulator(EmulatorConfig()) as emulator, KieSession(emulator.settings()) as kie:
        job = asyncio.create_task(kie.download(f"{emulator.base_url}/_emulator/blob/{400 << 20}", tmp_path / "x"))
        for _ in range(500):
            await asyncio.sleep(0.005)
            if any(p.name.endswith(".part") for p in tmp_path.iterdir()):
                break
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
    assert list(tmp_path.iterdir()) == []


def test_writer_of_an_abandoned_loop_stops_and_removes_its_temp_file(tmp_path: Path) -> None:
    """Writer threads are pooled (and joined at interpreter exit): a loop that closes in the middle of a body,
    without cancelling the download, must not leave its writer waiting forever, nor its temp file behind."""
    import time

    from kie_async.wire.download import _FileWriter

    loop = asyncio.new_event_loop()
    writer = _FileWriter(tmp_path / "half.bin", loop)
    loop.run_until_complete(writer.put([b"x" * 1000], 1000))
    deadline = time.monotonic() + 5
    while not writer.tmp.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.tmp.exists()  # the thread is writing: the body is half there
    loop.close()
    while writer.tmp.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not writer.tmp.exists()
    assert not (tmp_path / "half.bin").exists()  # the temp file goes only when the writer's loop has ended


def test_a_program_exiting_mid_download_does_not_wait_for_the_body(tmp_path: Path) -> None:
    """Writer threads are reused but stay daemon threads: a script whose event loop runs in a daemon thread
    (as ``kie_async.sync.KieClient``'s does) and that exits while a body is still arriving ends at once."""
    import subprocess
    import sys
    import textwrap
    import time

    script = textwrap.dedent(
        f"""
        import asyncio, threading, time
        from pathlib import Path
        from aiohttp import web
        from kie_async import KieSession
        from kie_async.emulator import KieEmulator, EmulatorConfig

        async def stalled(request):
            response = web.StreamResponse(headers={{"Content-Length": str(4 << 20)}})
            await response.prepare(request)
            await response.write(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(2 << 20))
            await asyncio.sleep(3600)  # the rest never comes
            return response

        async def main():
            app = web.Application()
            app.router.add_get("/slow.png", stalled)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]
            async with KieEmulator(EmulatorConfig()) as emulator, KieSession(emulator.settings()) as kie:
                await kie.download(f"http://127.0.0.1:{{port}}/slow.png", Path({str(tmp_path)!r}) / "out.png")

        threading.Thread(target=asyncio.run, args=(main(),), daemon=True).start()
        time.sleep(1.5)  # the writer thread now holds half a body
        print("exiting", flush=True)
        """
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "exiting" in done.stdout, done.stderr
    assert time.monotonic() - started < 20


def _download_in_child(folder: str) -> None:
    async def main() -> None:
        async with KieEmulator(EmulatorConfig()) as emulator, KieSession(emulator.settings()) as kie:
            result = await kie.download(f"{emulator.base_url}/_emulator/blob/{3 << 20}", Path(folder) / "child.bin")
        assert result.bytes_written == 3 << 20

    asyncio.run(main())


async def test_a_forked_child_gets_its_own_writer_threads(tmp_path: Path) -> None:
    """The parent's reused writer threads do not exist in a forked child: its downloads must still be written."""
    import multiprocessing

    async with KieEmulator(EmulatorConfig()) as emulator, KieSession(emulator.settings()) as kie:
        await kie.download(f"{emulator.base_url}/_emulator/blob/{1 << 20}", tmp_path / "parent.bin")  # threads exist
    child = multiprocessing.get_context("fork").Process(target=_download_in_child, args=(str(tmp_path),))
    child.start()
    await asyncio.to_thread(child.join, 60)
    assert child.exitcode == 0
    assert (tmp_path / "child.bin").stat().st_size == 3 << 20


def test_writer_threads_run_every_job_and_never_exceed_their_limit() -> None:
    """Idle accounting under contention: jobs submitted from many threads at once all run, on at most
    ``limit`` threads, and an idle thread is reused rather than a new one started."""
    import threading
    import time

    from kie_async.wire.download import _WriterThreads

    pool = _WriterThreads(limit=3)
    done: list[int] = []
    running = 0
    peak = 0
    lock = threading.Lock()

    def job(n: int) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.002)
        with lock:
            running -= 1
            done.append(n)

    def submit_many(base: int) -> None:
        for n in range(50):
            pool.submit(lambda n=base + n: job(n))  # type: ignore[misc]

    submitters = [threading.Thread(target=submit_many, args=(k * 100,)) for k in range(4)]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join()
    deadline = time.monotonic() + 20
    while len(done) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(done) == sorted(k * 100 + n for k in range(4) for n in range(50))
    assert peak <= 3
    assert pool._threads <= 3
    time.sleep(0.05)
    started = pool._threads
    pool.submit(lambda: job(999))  # all idle now: no new thread
    while 999 not in done and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool._threads == started
