"""Real task-engine worker processes for the integration tests: started in their own process group, stopped
(or SIGKILLed, the whole group, like a machine that vanished) by the test that started them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from kie_async.catalogue.request_models import RawUserRequest
from kie_async.emulator import KieEmulator

STOP_TIMEOUT = 60.0


def worker_env(emulator: KieEmulator, folder: Path, **extra: str) -> dict[str, str]:
    """What a worker process needs: the emulator as Kie.ai, and the test's own ledger and output folders."""
    return {
        **os.environ,
        "KIE_BASE_URL": emulator.base_url,
        "KIE_UPLOAD_BASE_URL": emulator.upload_base_url,
        "KIE_API_KEY": emulator.api_key,
        "KIE_STATE_DIR": str(folder / "state"),  # the ledger every worker of this test shares
        "KIE_OUTPUT_DIR": str(folder / "outputs"),
        "KIE_WAIT_POLL_INTERVAL_SECONDS": "0.2",
        "KIE_JOB_BUSY_COUNTDOWN": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class Workers:
    """Worker processes this test started; each in its own process group (its pool's children with it)."""

    def __init__(self, folder: Path, stop_timeout: float = STOP_TIMEOUT) -> None:
        self.folder = folder
        self.stop_timeout = stop_timeout
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", *argv],
                env=env,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL the worker and every process of its pool at once: nothing gets to finish or say goodbye."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # a pool child the main process left behind

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n" + (self.folder / f"{name}.log").read_text(errors="replace")[-3000:]
            for name in self.procs
        )


@contextlib.contextmanager
def workers(folder: Path, stop_timeout: float = STOP_TIMEOUT) -> Iterator[Workers]:
    """Workers for the block; stopped at its end: SIGTERM, then SIGKILL after ``stop_timeout`` seconds."""
    group = Workers(folder, stop_timeout)
    try:
        yield group
    finally:
        group.stop_all()


def requests(count: int, tag: str) -> list[RawUserRequest]:
    return [RawUserRequest(model_key="nano-banana-2", prompt=f"{tag} number {i}") for i in range(count)]


def tasks_per_prompt(emulator: KieEmulator) -> Counter[str]:
    return Counter(json.loads(json.loads(t.param_json())["input"])["prompt"] for t in emulator.tasks())


def run_folders(folder: Path) -> list[Path]:
    return sorted((folder / "outputs" / "runs").glob("*/run.json"))
